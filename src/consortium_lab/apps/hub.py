"""The JupyterHub deployment's Python side: the user server's command line, and
``consortium-lab hub``, which runs the hub of ``hub/`` on this machine to try it.

Each user's server is standalone Voila (:func:`consortium_lab.apps.voila.voila_command`) behind
``jupyter-standaloneproxy``, which checks the hub's OAuth cookie, starts Voila on the first
request and forwards to it. :func:`standalone_proxy_command` builds that command line; the
proxy fills ``{port}`` and ``{base_url}`` in, so literal braces in Voila's arguments are doubled.

``consortium-lab hub`` (see docs/hub.md) starts a loopback OpenID Connect provider with test
users, then JupyterHub in the *try it* mode (``--isolated``, as root: *one server, for real*),
prints the URL and the test users, and stops everything on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from consortium_lab.apps.analytics import (
    ANALYTICS_SERVICE,
    GATEWAY_TOKEN_ENV,
    GATEWAY_URL_ENV,
    analytics_env,
)
from consortium_lab.apps.hub_gateway import (
    gateway_account,
    gateway_command,
    gateway_prefix,
    gateway_process_options,
    hub_gateway_env,
    hub_gateway_settings,
    own_llm_setup,
    require_reachable_python,
    write_gateway_folder,
)
from consortium_lab.apps.ports import free_port, port_is_free
from consortium_lab.apps.voila import voila_command
from consortium_lab.service.settings import ADMIN_TOKENS_ENV

# Stand-ins handed to voila_command(), replaced by the proxy's templates afterwards: its port
# is an int, so the stand-in must be one; no real command line has either.
_PORT_MARK = 59_999
_BASE_MARK = "/@@consortium-base-url@@/"
HUB_DIR_ENV = "CONSORTIUM_HUB_DIR"


def standalone_proxy_command(
    *, pool_size: int = 1, preheat: bool = True, root: Path | None = None, timeout: int = 120
) -> list[str]:
    """The user server's command: ``jupyter-standaloneproxy`` running standalone Voila.

    ``--absolute-url`` forwards the full path, so Voila serves under ``{base_url}/``;
    ``--activity-interval=0`` stops the proxy reporting "active now" to the hub on a timer,
    which would keep the idle culler from ever culling (activity comes from the hub's proxy
    routes instead). ``timeout`` is how long the proxy waits for Voila to answer at start.
    """
    # No side files: this runs in the hub's process, and the server runs as another user.
    voila = voila_command(
        _PORT_MARK,
        root=root,
        preheat=preheat,
        pool_size=pool_size,
        base_url=_BASE_MARK,
        side_files=False,
    )
    port_arg = f"--port={_PORT_MARK}"
    if voila.count(port_arg) != 1 or sum(_BASE_MARK in a for a in voila) != 1:
        raise RuntimeError("voila_command() no longer takes --port and --Voila.base_url once each")
    templated = []
    for arg in voila:
        if arg == port_arg:
            templated.append("--port={port}")
            continue
        escaped = arg.replace("{", "{{").replace("}", "}}")
        templated.append(escaped.replace(_BASE_MARK, "{base_url}/"))
    return [
        str(Path(sys.executable).with_name("jupyter-standaloneproxy")),
        "--absolute-url",
        "--activity-interval=0",
        f"--timeout={timeout}",
        "--",
        *templated,
    ]


# -- consortium-lab hub ---------------------------------------------------------------------------


class HubStartError(RuntimeError):
    """A reason ``consortium-lab hub`` cannot start, in one line."""


def hub_dir() -> Path:
    """The ``hub/`` folder: ``$CONSORTIUM_HUB_DIR``, else the source checkout's."""
    env = os.environ.get(HUB_DIR_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "hub"
    if not (path / "jupyterhub_config.py").is_file():
        raise HubStartError(
            f"no hub folder at {path} (run from a source checkout, or set {HUB_DIR_ENV})"
        )
    return path


def ensure_node(hub: Path) -> None:
    """node and npm present, and the hub's node packages installed (``npm ci`` once)."""
    missing = [name for name in ("node", "npm") if shutil.which(name) is None]
    if missing:
        raise HubStartError(
            f"{' and '.join(missing)} not found: the hub's proxy and test login need Node.js "
            "(apt-get install nodejs npm)"
        )
    if not (hub / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=hub, capture_output=True, text=True
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise HubStartError(f"`npm ci` in {hub} failed: {last}")


def hub_environment(
    *, hub: Path, data_dir: Path, port: int, oidc_port: int, isolated: bool, users: list[str]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The hub's and the test provider's environment, and the test users with passwords."""
    test_users = [{"username": name, "password": secrets.token_urlsafe(9)} for name in users]
    bind = f"http://127.0.0.1:{port}"
    issuer = f"http://127.0.0.1:{oidc_port}"
    env = dict(os.environ)
    env.update(
        CONSORTIUM_HUB_MODE="isolated" if isolated else "try-it",
        CONSORTIUM_HUB_DATA_DIR=str(data_dir),
        CONSORTIUM_HUB_BIND_URL=bind,
        CONSORTIUM_HUB_HUB_PORT=str(free_port()),
        CONSORTIUM_HUB_PROXY_API_PORT=str(free_port()),
        CONSORTIUM_HUB_AUTH="oidc",
        CONSORTIUM_HUB_OAUTH_CLIENT_ID="consortium-hub",
        CONSORTIUM_HUB_OAUTH_CLIENT_SECRET=secrets.token_hex(32),
        CONSORTIUM_HUB_OIDC_AUTHORIZE_URL=f"{issuer}/auth",
        CONSORTIUM_HUB_OIDC_TOKEN_URL=f"{issuer}/token",
        CONSORTIUM_HUB_OIDC_USERDATA_URL=f"{issuer}/me",
        CONSORTIUM_HUB_ALLOWED_USERS=",".join(users),
        CONSORTIUM_HUB_ADMIN_USERS=users[0],
        # run_hub starts the gateway there before the hub.
        CONSORTIUM_HUB_GATEWAY_URL=f"http://127.0.0.1:{free_port()}",
        CONSORTIUM_HUB_GATEWAY_TOKEN=secrets.token_hex(32),
        # ... and the admin analytics after the hub.
        CONSORTIUM_HUB_ANALYTICS_URL=f"http://127.0.0.1:{free_port()}",
        CONSORTIUM_HUB_ANALYTICS_TOKEN=secrets.token_hex(32),
        OIDC_PORT=str(oidc_port),
        OIDC_CLIENT_ID="consortium-hub",
        OIDC_REDIRECT_URI=f"{bind}/hub/oauth_callback",
        OIDC_USERS_FILE=str(data_dir / "test-users.json"),
    )
    env["OIDC_CLIENT_SECRET"] = env["CONSORTIUM_HUB_OAUTH_CLIENT_SECRET"]
    env["PATH"] = os.pathsep.join([str(hub / "node_modules" / ".bin"), env.get("PATH", "")])
    return env, test_users


def _name(proc: subprocess.Popen[Any]) -> str:
    args = proc.args
    return Path(str(args[0] if isinstance(args, list) else args)).name


def wait_for(url: str, procs: list[subprocess.Popen[Any]], timeout: float) -> None:
    """Wait until ``url`` answers 200; fail at once if one of ``procs`` exits."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise HubStartError(f"{_name(proc)} exited with status {proc.returncode}")
        try:
            with opener.open(url, timeout=2):
                return
        except OSError:
            # A 404 too: the proxy answers before the hub has given it the hub's route.
            time.sleep(0.2)
    raise HubStartError(f"{url} did not answer within {timeout:.0f} s")


def stop_all(procs: list[subprocess.Popen[Any]], timeout: float = 30.0) -> None:
    """SIGTERM each process group (the hub first, so it stops its servers), then SIGKILL."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def stop_left_proxy(pid_file: Path) -> None:
    """Stop the hub's configurable-http-proxy if the hub left it running (a hub stopped while
    it was still starting does not clean up its proxy)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"configurable-http-proxy" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def start_gateway(
    env: dict[str, str], data_dir: Path, log: Any, admin_token: str, gateway_dir: Path | None = None
) -> subprocess.Popen[Any]:
    """The hub's gateway, its admin API's token ``admin_token`` (only the analytics service
    gets it).

    Without ``gateway_dir`` (*try it*) it runs as this Unix user with this user's own ``llm``
    keys (the demo models without any), its ledger in ``<data dir>/gateway``. With it
    (``--isolated``) it runs as Unix user ``consortium-gateway`` from that 0700 folder it owns,
    holding a copy of this user's ``llm`` keys and OpenAI-compatible models, its ledger and cache.
    """
    hub_api_url = f"http://127.0.0.1:{env['CONSORTIUM_HUB_HUB_PORT']}/hub/api"
    token = env["CONSORTIUM_HUB_GATEWAY_TOKEN"]
    port = int(env["CONSORTIUM_HUB_GATEWAY_URL"].rsplit(":", 1)[1])
    options: dict[str, Any] = {}
    if gateway_dir is None:
        folder = data_dir / "gateway"
        folder.mkdir(mode=0o700, exist_ok=True)
        config = folder / "gateway.json"
        config.write_text(json.dumps(hub_gateway_settings(folder), indent=2))
        genv = hub_gateway_env(os.environ, hub_api_url=hub_api_url, api_token=token)
    else:
        require_reachable_python(Path(sys.executable))
        account = gateway_account(gateway_dir)
        config = write_gateway_folder(
            account.folder,
            hub_gateway_settings(account.folder),
            **own_llm_setup(),
            owner=account,
        )
        base, options = gateway_process_options(os.environ, account.folder, account)
        genv = hub_gateway_env(base, hub_api_url=hub_api_url, api_token=token)
    genv[ADMIN_TOKENS_ENV] = admin_token
    return subprocess.Popen(
        gateway_command(config, port),
        env=genv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **options,
    )


def start_analytics(env: dict[str, str], log: Any, admin_token: str) -> subprocess.Popen[Any]:
    """The admin analytics service (``consortium-analytics``) at
    ``$CONSORTIUM_HUB_ANALYTICS_URL``, reading the hub's gateway with ``admin_token``."""
    aenv = analytics_env(
        os.environ,
        hub_api_url=f"http://127.0.0.1:{env['CONSORTIUM_HUB_HUB_PORT']}/hub/api",
        api_token=env["CONSORTIUM_HUB_ANALYTICS_TOKEN"],
    )
    aenv[GATEWAY_URL_ENV] = env["CONSORTIUM_HUB_GATEWAY_URL"] + gateway_prefix()
    aenv[GATEWAY_TOKEN_ENV] = admin_token
    port = env["CONSORTIUM_HUB_ANALYTICS_URL"].rsplit(":", 1)[1]
    return subprocess.Popen(
        [sys.executable, "-m", "consortium_lab.apps.analytics", port],
        env=aenv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl+C, so the ``finally`` that stops everything runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


DEFAULT_GATEWAY_DIR = Path("/var/lib/consortium-gateway")


def run_hub(
    *,
    port: int,
    isolated: bool,
    data_dir: Path | None,
    users: list[str],
    gateway_dir: Path | None = None,
) -> int:
    """Run the provider and the hub until interrupted; returns the exit code. ``gateway_dir``:
    the isolated gateway's own folder (default ``/var/lib/consortium-gateway``)."""
    if isolated and os.geteuid() != 0:
        raise HubStartError("--isolated creates a Unix user per hub user: run it as root")
    hub = hub_dir()
    ensure_node(hub)
    if not port_is_free(port):
        raise HubStartError(f"port {port} on 127.0.0.1 is taken: choose another with --port")
    if data_dir is None:
        data_dir = (
            Path("/srv/consortium-hub")
            if isolated
            else Path.home() / ".local" / "share" / "consortium-hub"
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    env, test_users = hub_environment(
        hub=hub, data_dir=data_dir, port=port, oidc_port=free_port(), isolated=isolated, users=users
    )
    users_file = Path(env["OIDC_USERS_FILE"])
    users_file.write_text(json.dumps(test_users, indent=2))
    os.chmod(users_file, 0o600)
    log_path = data_dir / "hub.log"
    procs: list[subprocess.Popen[Any]] = []
    with log_path.open("a") as log, _terminate_on_sigterm():
        try:
            oidc = subprocess.Popen(
                ["node", str(hub / "oidc" / "provider.mjs")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(oidc)
            wait_for(
                f"http://127.0.0.1:{env['OIDC_PORT']}/.well-known/openid-configuration", procs, 30
            )
            admin_token = secrets.token_hex(32)
            gateway_folder = (gateway_dir or DEFAULT_GATEWAY_DIR) if isolated else None
            try:
                procs.append(start_gateway(env, data_dir, log, admin_token, gateway_folder))
            except RuntimeError as exc:
                raise HubStartError(str(exc)) from exc
            wait_for(f"{env['CONSORTIUM_HUB_GATEWAY_URL']}{gateway_prefix()}health", procs, 90)
            # `consortium-lab hub` is for trying: its servers and proxy stop with it (a
            # deployment leaves both running across hub restarts).
            hub_proc = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("jupyterhub")),
                    "-f",
                    str(hub / "jupyterhub_config.py"),
                    "--JupyterHub.cleanup_servers=True",
                    "--JupyterHub.cleanup_proxy=True",
                ],
                env=env,
                cwd=data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.insert(0, hub_proc)
            wait_for(f"http://127.0.0.1:{port}/hub/login", procs, 90)
            procs.append(start_analytics(env, log, admin_token))
            # Followed through the hub's OAuth to its login page: the whole chain works.
            wait_for(f"http://127.0.0.1:{port}/services/{ANALYTICS_SERVICE}/", procs, 90)
            click.echo(
                f"Consortium hub ({'isolated' if isolated else 'try it'}): http://127.0.0.1:{port}/"
            )
            click.echo(f"Test users (login page of the loopback provider), log in {log_path}:")
            for user in test_users:
                click.echo(f"  {user['username']}  password {user['password']}")
            if not isolated:
                click.echo(
                    "Try-it mode: every user server runs as this Unix user: "
                    "no isolation between users."
                )
            click.echo(
                f"Admin analytics ({test_users[0]['username']}): "
                f"http://127.0.0.1:{port}/services/{ANALYTICS_SERVICE}/"
            )
            click.echo("Press Ctrl+C to stop.")
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
            failed = next(p for p in procs if p.poll() is not None)
            click.echo(f"{_name(failed)} exited with status {failed.returncode}; see {log_path}")
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            stop_all(procs)
            stop_left_proxy(data_dir / "proxy.pid")


@click.command("hub")
@click.option("--port", type=int, default=8000, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--isolated",
    is_flag=True,
    help="One server, for real: a Unix user per hub user (run as root).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Hub database, cookie secret and log (default ~/.local/share/consortium-hub, "
    "or /srv/consortium-hub with --isolated).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    default=("alice", "bob"),
    show_default=True,
    help="A test user of the loopback login (repeat; the first is an admin).",
)
@click.option(
    "--gateway-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --isolated: the gateway's own 0700 folder (keys, ledger, cache), owned by Unix "
    f"user consortium-gateway (default {DEFAULT_GATEWAY_DIR}).",
)
def hub_command(
    port: int,
    isolated: bool,
    data_dir: Path | None,
    users: tuple[str, ...],
    gateway_dir: Path | None,
) -> None:
    """Run the JupyterHub deployment on 127.0.0.1 with a loopback login, to try it."""
    if gateway_dir is not None and not isolated:
        click.echo("consortium-lab hub: --gateway-dir needs --isolated", err=True)
        sys.exit(1)
    try:
        code = run_hub(
            port=port,
            isolated=isolated,
            data_dir=data_dir,
            users=list(users),
            gateway_dir=gateway_dir,
        )
    except HubStartError as exc:
        click.echo(f"consortium-lab hub: {exc}", err=True)
        code = 1
    sys.exit(code)
