"""Fixtures of the hub tests: a real JupyterHub (hub/jupyterhub_config.py) with its
configurable-http-proxy, the loopback OpenID Connect provider (hub/oidc/provider.mjs), and
Debian's Chromium through Playwright. Everything binds 127.0.0.1 and stops at teardown.

Every test here is marked ``hub`` (select them with ``-m hub``); they skip, with the reason,
when node, the hub's node packages or Chromium are missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chromium import launch_or_skip
from consortium_lab.apps.hub import stop_left_proxy
from consortium_lab.apps.hub_gateway import (
    gateway_account,
    gateway_command,
    gateway_prefix,
    gateway_process_options,
    hub_gateway_env,
    hub_gateway_settings,
    write_gateway_folder,
)
from consortium_lab.apps.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "hub"
JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")
PASSWORD = "correct horse battery staple"
GATEWAY_ADMIN = "tok-hub-gateway-admin-0123456789"
USERS = ("alice", "bob", "carol", "dave")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.hub)
            # A hub, a provider and a cold user server start within the first test.
            item.add_marker(pytest.mark.timeout(420))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hub: JupyterHub deployment test (hub/, Chromium)")


def needs_node() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is missing (apt-get install nodejs npm)")
    if not (HUB / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        pytest.skip("the hub's node packages are missing: run `npm ci` in hub/ (scripts/test does)")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a GET, without following redirects' errors into exceptions."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_for(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited ({proc.returncode}):\n{log_without_proxy(log)}")
        try:
            with OPENER.open(url, timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log_without_proxy(log)}")


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 30) -> None:
    """SIGTERM the process group the test started, SIGKILL if it does not stop in time."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Gateway:
    """The hub's ``consortium-gateway`` service (a ``consortium-lab gateway`` process)."""

    url: str
    """Its own URL with the service prefix, no trailing slash."""
    token: str
    """Its hub API token (a service's token)."""
    provider_key: str
    """A fresh random provider key in its llm folder, which no user server may see."""
    proc: subprocess.Popen[Any]
    log: Path
    folder: Path
    """Its own folder: settings, ``llm/keys.json``, ledger and cache."""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    """More ``Popen`` arguments: the Unix user it runs as, when isolated."""

    def restart(self) -> None:
        """Start it again (after a test killed it), on the same port and ledger."""
        stop(self.proc)
        self.proc = launch(self.command, self.env, self.log, self.options)
        wait_for(self.url + "/health", self.proc, self.log, 90)


def launch(
    command: list[str], env: dict[str, str], log: Path, options: dict[str, Any]
) -> subprocess.Popen[Any]:
    """``command`` in its own session, its output appended to ``log``."""
    with log.open("a") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **options,
        )


def start_gateway(
    root: Path,
    env: dict[str, str],
    *,
    python: Path | None = None,
    isolated_dir: Path | None = None,
    llm_files: dict[str, str] | None = None,
    **settings: Any,
) -> Gateway:
    """The gateway the hub of ``env`` registers, on its port, offering the demo models only
    unless ``settings`` say otherwise (nothing may leave the machine). ``isolated_dir``: run it
    as Unix user ``consortium-gateway`` from that folder (root only); ``python``: the
    interpreter whose ``consortium-lab`` runs it; ``llm_files``: more files of its llm folder
    (``extra-openai-models.yaml``)."""
    provider_key = "sk-" + secrets.token_hex(24)
    owner = gateway_account(isolated_dir) if isolated_dir else None
    folder = owner.folder if owner else root / "gateway"
    config = write_gateway_folder(
        folder,
        hub_gateway_settings(folder, **{"models": ["demo-*"], **settings}),
        keys={"openai": provider_key},
        llm_files=llm_files,
        owner=owner,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIUM_HUB_")}
    base.update(
        CONSORTIUM_GATEWAY_ADMIN_TOKENS=GATEWAY_ADMIN,
        CONSORTIUM_LAB_DEMO_DELAY=env.get("CONSORTIUM_LAB_DEMO_DELAY", "0.01"),
    )
    base, options = gateway_process_options(base, folder, owner)
    genv = hub_gateway_env(
        base,
        hub_api_url=f"http://127.0.0.1:{env['CONSORTIUM_HUB_HUB_PORT']}/hub/api",
        api_token=env["CONSORTIUM_HUB_GATEWAY_TOKEN"],
    )
    port = int(env["CONSORTIUM_HUB_GATEWAY_URL"].rsplit(":", 1)[1].strip("/"))
    url = f"http://127.0.0.1:{port}{gateway_prefix().rstrip('/')}"
    log = root / "gateway.log"
    command = gateway_command(config, port, python)
    proc = launch(command, genv, log, options)
    try:
        wait_for(url + "/health", proc, log, 90)
    except BaseException:
        stop(proc)
        raise
    token = env["CONSORTIUM_HUB_GATEWAY_TOKEN"]
    return Gateway(url, token, provider_key, proc, log, folder, command, genv, options)


@dataclass
class Hub:
    """A running hub and its provider; ``url`` ends with ``/``."""

    url: str
    root: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[Any]
    oidc: subprocess.Popen[Any]
    users_file: Path
    gateway: Gateway
    command: list[str] = field(default_factory=list)
    extra_users: list[dict[str, Any]] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["CONSORTIUM_HUB_DATA_DIR"])

    @property
    def api(self) -> str:
        return self.url + "hub/api"

    def add_user(self, username: str, **claims: Any) -> None:
        """Add a user to the provider (read at each login)."""
        users = json.loads(self.users_file.read_text())
        users.append({"username": username, "password": PASSWORD, **claims})
        self.users_file.write_text(json.dumps(users))

    def hub_users(self) -> list[str]:
        """User names in the hub's database (read with sqlite3, the hub's own file)."""
        import sqlite3

        with sqlite3.connect(self.data_dir / "jupyterhub.sqlite") as db:
            return [row[0] for row in db.execute("select name from users order by name")]

    def log_tail(self, n: int = 4000) -> str:
        return log_without_proxy(self.log, n)


def hub_env(root: Path, port: int, oidc_port: int, **overrides: str) -> dict[str, str]:
    """A full environment for a hub on ``port`` logging in through ``oidc_port``."""
    issuer = f"http://127.0.0.1:{oidc_port}"
    secret = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIUM_HUB_")}
    env.update(
        CONSORTIUM_HUB_MODE="try-it",
        CONSORTIUM_HUB_DATA_DIR=str(root / "data"),
        CONSORTIUM_HUB_BIND_URL=f"http://127.0.0.1:{port}",
        CONSORTIUM_HUB_HUB_PORT=str(free_port()),
        CONSORTIUM_HUB_PROXY_API_PORT=str(free_port()),
        CONSORTIUM_HUB_AUTH="oidc",
        CONSORTIUM_HUB_OAUTH_CLIENT_ID="consortium-hub-test",
        CONSORTIUM_HUB_OAUTH_CLIENT_SECRET=secret,
        CONSORTIUM_HUB_OIDC_AUTHORIZE_URL=f"{issuer}/auth",
        CONSORTIUM_HUB_OIDC_TOKEN_URL=f"{issuer}/token",
        CONSORTIUM_HUB_OIDC_USERDATA_URL=f"{issuer}/me",
        CONSORTIUM_HUB_ALLOW_ALL="1",
        CONSORTIUM_HUB_ADMIN_USERS="alice",
        CONSORTIUM_HUB_GATEWAY_URL=f"http://127.0.0.1:{free_port()}",
        CONSORTIUM_HUB_GATEWAY_TOKEN=secrets.token_hex(32),
        # Logins go to the gateway's audit log (the gateway started here admits this token).
        CONSORTIUM_HUB_GATEWAY_ADMIN_TOKEN=GATEWAY_ADMIN,
        OIDC_PORT=str(oidc_port),
        OIDC_CLIENT_ID="consortium-hub-test",
        OIDC_CLIENT_SECRET=secret,
        OIDC_REDIRECT_URI=f"http://127.0.0.1:{port}/hub/oauth_callback",
        OIDC_USERS_FILE=str(root / "users.json"),
        CONSORTIUM_LAB_DEMO_DELAY="0.01",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def start_hub(
    root: Path,
    *args: str,
    python: Path | None = None,
    gateway_settings: dict[str, Any] | None = None,
    gateway_options: dict[str, Any] | None = None,
    keep_servers: bool = False,
    **overrides: str,
) -> Hub:
    """Start the gateway, the provider and the hub (``args`` go to ``jupyterhub``), waiting
    for each. ``python``: the interpreter to run the hub (and so the user servers) with;
    ``gateway_settings``: on top of the hub gateway's own; ``gateway_options``: more arguments
    of :func:`start_gateway` (``isolated_dir``, ``llm_files``)."""
    needs_node()
    root.mkdir(parents=True, exist_ok=True)
    port, oidc_port = free_port(), free_port()
    env = hub_env(root, port, oidc_port, **overrides)
    gateway = start_gateway(
        root, env, python=python, **(gateway_options or {}), **(gateway_settings or {})
    )
    users_file = Path(env["OIDC_USERS_FILE"])
    users_file.write_text(json.dumps([{"username": name, "password": PASSWORD} for name in USERS]))
    log = root / "hub.log"
    out = log.open("a")
    oidc = subprocess.Popen(
        ["node", str(HUB / "oidc" / "provider.mjs")],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc = None
    command = [
        *([str(python), "-m", "jupyterhub"] if python else [str(JUPYTERHUB)]),
        "-f",
        str(HUB / "jupyterhub_config.py"),
        # The tests stop everything they start; a deployment keeps both running (as does a
        # test of a hub restart: keep_servers).
        *([] if keep_servers else ["--JupyterHub.cleanup_servers=True"]),
        *([] if keep_servers else ["--JupyterHub.cleanup_proxy=True"]),
        *args,
    ]
    try:
        wait_for(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration", oidc, log, 30)
        proc = launch_hub(command, env, root, log)
    except BaseException:
        stop(proc)
        stop(oidc)
        stop(gateway.proc)
        raise
    return Hub(
        url=f"http://127.0.0.1:{port}/",
        root=root,
        env=env,
        log=log,
        proc=proc,
        oidc=oidc,
        users_file=users_file,
        gateway=gateway,
        command=command,
    )


def log_without_proxy(log: Path, n: int = 4000) -> str:
    """The end of the hub's log without the proxy's lines: while the hub is down, the proxy
    logs a 404 and a refused connection five times a second and buries why the hub stopped."""
    kept: list[str] = []
    in_proxy_entry = False
    for line in log.read_text(errors="replace").splitlines():
        if "[ConfigProxy]" in line:
            in_proxy_entry = True
        elif not (in_proxy_entry and line.startswith((" ", "}"))):
            in_proxy_entry = False
            kept.append(line)
    return "\n".join(kept)[-n:]


def launch_hub(command: list[str], env: dict[str, str], root: Path, log: Path) -> Any:
    """Start JupyterHub and wait until the proxy routes to its login page."""
    with log.open("a") as out:
        proc = subprocess.Popen(
            command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = env["CONSORTIUM_HUB_BIND_URL"] + "/hub/login"
    try:
        wait_for(url, proc, log, 90)
        # The hub answers /hub/login itself before the proxy has its route: wait for the route
        # (once over 60 s, with a load average of 30).
        deadline = time.monotonic() + 180
        while get(url)[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited ({proc.returncode}):\n{log_without_proxy(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the hub's route never came up:\n{log_without_proxy(log)}")
            time.sleep(0.2)
    except BaseException:
        stop(proc)
        raise
    return proc


def restart_hub(hub: Hub) -> None:
    """Stop the hub process alone (a hub of ``keep_servers``: servers and proxy stay), then
    start it again on the same database."""
    stop(hub.proc, 60)
    hub.proc = launch_hub(hub.command, hub.env, hub.root, hub.log)


def stop_hub(hub: Hub) -> None:
    stop(hub.proc, 60)
    stop(hub.oidc)
    stop_left_proxy(hub.data_dir / "proxy.pid")
    stop(hub.gateway.proc)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The module's *try it* hub (idle culling off in practice: one hour)."""
    running = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        yield running
    finally:
        stop_hub(running)
        print("\nhub log (tail):\n" + running.log_tail(3000))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_or_skip() as browser:
        yield browser


@pytest.fixture
def new_context(browser: Any) -> Iterator[Any]:
    """Fresh browser contexts (one per person), closed after the test."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(60_000)
        contexts.append(context)
        return context

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def submit_login(page: Any, hub: Hub, username: str, password: str = PASSWORD) -> None:
    """From the hub's login page through the provider's: the form is submitted on return."""
    page.goto(hub.url + "hub/login")
    page.get_by_role("button", name=re.compile("Sign in with")).click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def login_to_chat(page: Any, hub: Hub, username: str) -> float:
    """Log in and wait until the chat is interactive; returns seconds from submitting."""
    submit_login(page, hub, username)
    started = time.monotonic()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=150_000)
    return time.monotonic() - started


def server_pid(hub: Hub, name: str) -> int:
    """The pid of ``name``'s user server (the proxy), from the spawner's state in the hub's
    database."""
    import sqlite3

    with sqlite3.connect(hub.data_dir / "jupyterhub.sqlite") as db:
        (state,) = db.execute(
            "select s.state from spawners s join users u on u.id = s.user_id where u.name = ?",
            (name,),
        ).fetchone()
    return int(json.loads(state)["pid"])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found = [pid]
    for current in found:
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split()
            found += [int(c) for c in children if int(c) not in found]
    return found


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def pss_by_role(pid: int) -> dict[str, int]:
    """PSS in KiB of a user server's processes: the proxy, Voila, the kernels."""
    out = {"proxy": 0, "voila": 0, "kernels": 0}
    for child in process_tree(pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "ipykernel" in cmdline:
            role = "kernels"
        elif "voila" in cmdline and "standaloneproxy" not in cmdline:
            role = "voila"
        else:
            role = "proxy"
        out[role] += pss_kib(child)
    return out
