"""*One server, for real*: the hub as root, a Unix user ``cl-<name>`` per hub user, the gateway
as Unix user ``consortium-gateway`` from its own 0700 folder.

These tests create Unix users (removed at teardown), so they need root (CI runs as root).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium_lab.apps.hub_gateway import GATEWAY_UNIX_USER
from consortium_lab.apps.ports import free_port

from .conftest import (
    ROOT,
    Hub,
    get,
    login_to_chat,
    needs_node,
    process_tree,
    server_pid,
    start_hub,
    stop_hub,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the isolated mode creates Unix users: run as root (CI does)"
)
USERS = ("alice", "bob")
SECRET_WALK = Path(__file__).with_name("secret_walk.py")


def world_python(folder: Path) -> Path:
    """A Python environment every Unix user may run, on this checkout's packages.

    The test environment's interpreter may live where only root can reach it (pyenv under
    /root, 0700); a deployment installs into a root-owned, world-readable environment. This is
    one: Debian's python3.11 with the checkout's site-packages added by a .pth file.
    """
    base = Path("/usr/bin/python3.11")
    if not base.exists() or sys.version_info[:2] != (3, 11):
        pytest.skip("needs Debian's /usr/bin/python3.11 for a world-readable environment")
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(folder)], check=True)
    os.chmod(folder, 0o755)
    site = folder / "lib" / "python3.11" / "site-packages"
    packages = next(
        p for p in map(Path, sys.path) if p.name == "site-packages" and ".venv" in str(p)
    )
    # Jupyter's data (Voila's and nbconvert's templates) is found under sys.prefix/share.
    (folder / "share").symlink_to(packages.parents[2] / "share")
    (site / "zz-checkout.pth").write_text(f"import site; site.addsitedir({str(packages)!r})\n")
    scripts = {
        "jupyter-standaloneproxy": "jupyter_server_proxy.standalone",
        "consortium-lab": "consortium_lab.apps.cli",
        "jupyterhub": "jupyterhub.app",
    }
    for name, module in scripts.items():
        script = folder / "bin" / name
        script.write_text(f"#!{folder}/bin/python\nfrom {module} import main\nmain()\n")
        script.chmod(0o755)
    return folder / "bin" / "python"


def remove_unix_users() -> None:
    for name in USERS:
        subprocess.run(["userdel", "--remove", f"cl-{name}"], capture_output=True)
    subprocess.run(["userdel", GATEWAY_UNIX_USER], capture_output=True)


@pytest.fixture(scope="module")
def isolated_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    remove_unix_users()
    # Homes outside pytest's 0700 temporary folder, so the traversal is the users' own.
    homes = Path(tempfile.mkdtemp(prefix="cl-hub-homes-"))
    os.chmod(homes, 0o755)
    python = world_python(homes / "python")
    running = start_hub(
        tmp_path_factory.mktemp("isolated-hub"),
        python=python,
        # Beside the homes: every folder above it lets others pass, as /var/lib does.
        gateway_options={"isolated_dir": homes / "gateway"},
        CONSORTIUM_HUB_MODE="isolated",
        CONSORTIUM_HUB_HOME_BASE=str(homes),
    )
    try:
        yield running
    finally:
        stop_hub(running)
        print("\nisolated hub log (tail):\n" + running.log_tail(3000))
        remove_unix_users()
        shutil.rmtree(homes, ignore_errors=True)


def as_user(
    user: str,
    *command: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=stdin,
    )


def server_env(hub: Hub, name: str) -> dict[str, str]:
    """The environment ``name``'s user server runs with (read as root from /proc)."""
    raw = Path(f"/proc/{server_pid(hub, name)}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_each_user_runs_as_their_own_unix_user_and_cannot_read_the_other(
    isolated_hub: Hub, new_context
):
    for name in USERS:
        seconds = login_to_chat(new_context().new_page(), isolated_hub, name)
        print(f"\n{name} (isolated): login submitted to interactive chat {seconds:.2f} s")
    alice = pwd.getpwnam("cl-alice")
    home = Path(alice.pw_dir)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert home.stat().st_uid == alice.pw_uid
    private = home / ".consortium-hub"
    assert (private / "voila.json").stat().st_uid == alice.pw_uid
    # Every process of alice's server (proxy, Voila, kernels) runs as cl-alice.
    pids = process_tree(server_pid(isolated_hub, "alice"))
    assert len(pids) >= 3
    assert {Path(f"/proc/{pid}").stat().st_uid for pid in pids} == {alice.pw_uid}

    # bob's Unix user: alice's home, her token and her processes' environment are closed.
    for command in (
        ("ls", str(home)),
        ("cat", str(private / "voila.json")),
        ("cat", f"/proc/{pids[0]}/environ"),
        ("cat", str(isolated_hub.data_dir / "jupyterhub.sqlite")),
        ("cat", str(isolated_hub.data_dir / "jupyterhub_cookie_secret")),
    ):
        done = as_user("cl-bob", *command)
        assert done.returncode != 0, f"cl-bob could run {command}: {done.stdout[:200]}"
        assert "Permission denied" in done.stderr
    # alice herself can read her files.
    assert as_user("cl-alice", "cat", str(private / "voila.json")).returncode == 0
    # The hub's own secrets are root's alone.
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "proxy_auth_token"):
        path = isolated_hub.data_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == 0


def test_the_gateway_runs_as_its_own_unix_user_that_alice_cannot_read(isolated_hub: Hub):
    gateway = isolated_hub.gateway
    account = pwd.getpwnam(GATEWAY_UNIX_USER)
    # A system user: no login shell, no home.
    assert account.pw_shell == "/usr/sbin/nologin"
    assert not Path(account.pw_dir).exists()
    pids = process_tree(gateway.proc.pid)
    assert {Path(f"/proc/{pid}").stat().st_uid for pid in pids} == {account.pw_uid}
    keys = gateway.folder / "llm" / "keys.json"
    for path, mode in ((gateway.folder, 0o700), (keys, 0o600)):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, mode), path
    assert gateway.provider_key in keys.read_text()
    # The gateway wrote its ledger and cache there, as itself.
    assert (gateway.folder / "ledger.db").stat().st_uid == account.pw_uid

    # Code run as alice's Unix user, with her server's environment.
    env = server_env(isolated_hub, "alice")
    for command in (
        ("ls", str(gateway.folder)),
        ("cat", str(keys)),
        ("cat", str(gateway.folder / "gateway.json")),
        ("cat", f"/proc/{gateway.proc.pid}/environ"),
    ):
        done = as_user("cl-alice", *command, env=env)
        assert done.returncode != 0, f"cl-alice could run {command}: {done.stdout[:200]}"
        assert "Permission denied" in done.stderr, (command, done.stderr)


def test_the_provider_key_is_nowhere_alice_can_read(isolated_hub: Hub):
    hub = isolated_hub
    # alice's server runs since the first test logged her in (her environment is read from it).
    env = server_env(hub, "alice")
    homes = Path(hub.env["CONSORTIUM_HUB_HOME_BASE"])
    roots = ["/etc", "/tmp", "/var/tmp", "/run", "/home", "/srv", str(homes)]
    roots += [str(hub.root), str(hub.data_dir), str(ROOT), sys.prefix]
    done = as_user(
        "cl-alice",
        str(homes / "python" / "bin" / "python"),
        str(SECRET_WALK),
        *roots,
        env=env,
        stdin=hub.gateway.provider_key,
        timeout=360,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    skipped = report["skipped"]
    print(f"\nread {report['files']} files as cl-alice; {len(skipped)} over 4 MB skipped:")
    print("\n".join(skipped[:10]) + ("\n..." if len(skipped) > 10 else ""))
    # The walk did reach her own home and the project: it read what she may read.
    assert report["files"] > 1000
    assert report["found"] == [], f"the provider key is readable by cl-alice in {report['found']}"
    # And it would have found it: the same walk as root finds the gateway's key file.
    as_root = subprocess.run(
        [sys.executable, str(SECRET_WALK), str(hub.gateway.folder)],
        input=hub.gateway.provider_key,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert str(hub.gateway.folder / "llm" / "keys.json") in json.loads(as_root.stdout)["found"]


def test_consortium_lab_hub_isolated_runs_the_gateway_as_its_own_unix_user(tmp_path: Path):
    needs_node()
    base = Path(tempfile.mkdtemp(prefix="cl-hub-cli-"))
    os.chmod(base, 0o755)
    key = "sk-" + secrets.token_hex(24)
    llm_dir = tmp_path / "operator-llm"
    llm_dir.mkdir()
    (llm_dir / "keys.json").write_text(json.dumps({"// Note": "llm's own", "openai": key}))
    port, folder = free_port(), base / "gateway"
    command = [str(world_python(base / "python").with_name("consortium-lab")), "hub"]
    command += ["--isolated", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*command, "--gateway-dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=dict(os.environ, LLM_USER_PATH=str(llm_dir)),
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("Press Ctrl+C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines) + (tmp_path / "data" / "hub.log").read_text()[-3000:]
            lines.append(line)
        text = "".join(lines)
        assert f"Consortium hub (isolated): http://127.0.0.1:{port}/" in text
        assert "no isolation" not in text
        status, body = get(f"http://127.0.0.1:{port}/services/consortium-gateway/health")
        assert status == 200 and '"ledger": "ok"' in body, body
        account = pwd.getpwnam(GATEWAY_UNIX_USER)
        config = str(folder / "gateway.json").encode()
        gateway = [
            pid
            for pid in process_tree(proc.pid)
            if config in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert gateway, "no gateway process with the folder's settings"
        assert {Path(f"/proc/{pid}").stat().st_uid for pid in gateway} == {account.pw_uid}
        keys = folder / "llm" / "keys.json"
        assert (keys.stat().st_uid, stat.S_IMODE(keys.stat().st_mode)) == (account.pw_uid, 0o600)
        assert json.loads(keys.read_text()) == {"openai": key}  # the operator's, copied
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(90)
        shutil.rmtree(base, ignore_errors=True)
        # Refused (and kept) while the module's hub still runs a gateway as that user.
        subprocess.run(["userdel", GATEWAY_UNIX_USER], capture_output=True)
    assert code == 0
