"""*One server, for real*: the hub as root, a Unix user ``cl-<name>`` per hub user.

These tests create Unix users (removed at teardown), so they need root (CI runs as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Hub, login_to_chat, process_tree, server_pid, start_hub, stop_hub

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the isolated mode creates Unix users: run as root (CI does)"
)
USERS = ("alice", "bob")


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
    script = folder / "bin" / "jupyter-standaloneproxy"
    script.write_text(
        f"#!{folder}/bin/python\nfrom jupyter_server_proxy.standalone import main\nmain()\n"
    )
    script.chmod(0o755)
    return folder / "bin" / "python"


def remove_unix_users() -> None:
    for name in USERS:
        subprocess.run(["userdel", "--remove", f"cl-{name}"], capture_output=True)


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


def as_user(user: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


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
