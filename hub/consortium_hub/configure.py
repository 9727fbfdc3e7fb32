"""Turn :class:`~consortium_hub.settings.HubSettings` into JupyterHub configuration.

Kept apart from ``jupyterhub_config.py`` so a test can apply it to a plain traitlets
``Config`` and read back what the hub would run with.
"""

from __future__ import annotations

import os
import pwd
import secrets
import sys
from pathlib import Path
from typing import Any

from consortium_lab.apps.connect import GATEWAY_URL_ENV
from consortium_lab.apps.hub import standalone_proxy_command
from consortium_lab.apps.hub_gateway import gateway_prefix
from consortium_lab.sinks.runlog import RETENTION_ENV

from .audit import LoginAudit
from .auth import (
    GUESTS_GROUP,
    ConsortiumGenericOAuthenticator,
    ConsortiumGitHubOAuthenticator,
    NamedRuleMixin,
)
from .settings import USERNAME_PATTERN, HubSettings, Service, SettingsError
from .spawners import (
    IsolatedSpawner,
    TryItSpawner,
    options_form,
    options_from_form,
    pre_spawn_hook,
)

HUB_DIR = Path(__file__).resolve().parent.parent
GATEWAY_SCOPE = "access:services!service=consortium-gateway"
ADMINS_GROUP = "consortium-admins"
# The stock `server` role's scopes (jupyterhub.roles.get_default_roles).
SERVER_SCOPES = ["users:activity!user", "access:servers!server"]
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# The guest clean-up sees and removes guests only.
GUEST_CLEANUP_SCOPES = [
    f"list:users!group={GUESTS_GROUP}",
    f"read:users!group={GUESTS_GROUP}",
    f"read:users:activity!group={GUESTS_GROUP}",
    f"read:servers!group={GUESTS_GROUP}",
    f"delete:servers!group={GUESTS_GROUP}",
    f"admin:users!group={GUESTS_GROUP}",
]
CHAT_URL = "/hub/user-redirect/voila/render/chat.ipynb"
NO_ISOLATION = (
    "[consortium-hub] try-it mode: every user server runs as Unix user {user}: "
    "no isolation between users. Use CONSORTIUM_HUB_MODE=isolated for real users."
)


def private_file(path: Path, make: Any = None) -> Path:
    """``path`` as a 0600 file of the hub's user, created (with ``make()``'s text) if missing."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make() if make else "")
    os.chmod(path, 0o600)
    return path


def check_runtime(settings: HubSettings) -> None:
    """What the settings need from this machine: root for isolated mode, the node proxy."""
    problems = []
    if settings.mode == "isolated" and os.geteuid() != 0:
        problems.append("CONSORTIUM_HUB_MODE=isolated: the hub must run as root (it creates users)")
    if not (HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        problems.append(f"configurable-http-proxy is not installed: run `npm ci` in {HUB_DIR}")
    if problems:
        raise SettingsError(problems)


def configure_authenticator(c: Any, s: HubSettings) -> None:
    if s.auth == "oidc":
        c.JupyterHub.authenticator_class = ConsortiumGenericOAuthenticator
        auth = c.GenericOAuthenticator
        # oauthenticator 17 reads no discovery document: the three endpoints are given.
        auth.authorize_url = s.oidc_authorize_url
        auth.token_url = s.oidc_token_url
        auth.userdata_url = s.oidc_userdata_url
        auth.username_claim = s.username_claim
        auth.scope = s.scopes
        auth.login_service = "your identity provider"
        if s.groups_claim:
            auth.manage_groups = True
            auth.auth_state_groups_key = f"oauth_user.{s.groups_claim}"
            auth.allowed_groups = s.allowed_groups
    else:
        c.JupyterHub.authenticator_class = ConsortiumGitHubOAuthenticator
        auth = c.GitHubOAuthenticator
    auth.client_id = s.client_id
    auth.client_secret = s.client_secret
    auth.oauth_callback_url = s.callback_url
    auth.allow_all = s.allow_all
    auth.allowed_users = s.allowed_users
    auth.admin_users = s.admin_users
    c.Authenticator.username_pattern = USERNAME_PATTERN
    # A class attribute, not a trait: the mixin is no traitlets class of its own.
    NamedRuleMixin.guests_enabled = s.guests
    if s.gateway_admin_token:
        c.Authenticator.post_auth_hook = LoginAudit(
            f"{gateway_base(s)}admin/audit", s.gateway_admin_token
        )


def gateway_base(s: HubSettings) -> str:
    """The gateway's own URL with the prefix it serves under (the proxy's, unstripped)."""
    return f"{s.gateway.url.rstrip('/')}{gateway_prefix(s.gateway.name)}"


def configure_spawner(c: Any, s: HubSettings) -> None:
    if s.mode == "isolated":
        c.JupyterHub.spawner_class = IsolatedSpawner
        c.IsolatedSpawner.home_base = str(s.home_base)
    else:
        c.JupyterHub.spawner_class = TryItSpawner
        c.TryItSpawner.home_dir_template = str(s.data_dir / "homes" / "{username}")
        print(NO_ISOLATION.format(user=pwd.getpwuid(os.getuid()).pw_name), file=sys.stderr)
    c.Spawner.cmd = standalone_proxy_command(pool_size=s.pool_size, preheat=s.pool_size > 0)
    c.Spawner.ip = "127.0.0.1"
    # First start includes Voila's and the preheated kernel's start-up on a loaded machine.
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 120
    c.Spawner.options_form = options_form
    c.Spawner.options_from_form = options_from_form
    c.Spawner.pre_spawn_hook = pre_spawn_hook
    # The server's token gets what its user holds: the stock server scopes plus the gateway.
    c.Spawner.server_token_scopes = [*SERVER_SCOPES, GATEWAY_SCOPE]
    c.Spawner.environment = chat_environment(s)


def chat_environment(s: HubSettings) -> dict[str, str]:
    """What a user server's chat needs: the gateway (its calls go there with the server's
    token), the operator's run-log retention, chat kernels' lighter imports, and no ``llm``
    plugin from entry points, so the offline demo models and key-less plugin models, which
    would bypass the gateway's quotas, are not there to pick. Never a provider key: the
    gateway holds those."""
    env = {
        GATEWAY_URL_ENV: gateway_base(s),
        "CONSORTIUM_LAB_CHAT_KERNEL": "1",
        "LLM_LOAD_PLUGINS": "",
    }
    if s.retention_days is not None:
        # The operator's maximum: the chat server purges older runs (apps/retention.py).
        env[RETENTION_ENV] = str(s.retention_days)
    return env


def external(service: Service) -> dict[str, Any]:
    """An externally managed service; the hub starts without it (waiting at most 3 s)."""
    return {"name": service.name, "url": service.url, "api_token": service.token, "timeout": 3}


def configure_services(c: Any, s: HubSettings) -> None:
    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = [
        {"name": "user", "scopes": ["self", GATEWAY_SCOPE]},
    ]
    # Externally managed (url + token): a hub restart does not cut the gateway's streams.
    services.append(external(s.gateway))
    roles.append(
        {"name": s.gateway.name, "scopes": ["read:users:groups"], "services": [s.gateway.name]}
    )
    if s.analytics is not None:
        # Our own admin pages: the hub's "authorize access" page would only add a click.
        services.append({**external(s.analytics), "oauth_no_confirm": True})
        roles.append(
            {
                "name": "consortium-analytics-users",
                "scopes": [f"access:services!service={s.analytics.name}"],
                "groups": [ADMINS_GROUP],
            }
        )
    python = sys.executable
    services.append(
        {
            "name": "idle-culler",
            "command": [
                python,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={s.idle_timeout}",
                f"--cull-every={s.cull_every}",
            ],
        }
    )
    roles.append({"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]})
    if s.guests:
        services.append(
            {
                "name": "guest-cleanup",
                "command": [python, "-m", "consortium_hub.guests"],
                "environment": {
                    "PYTHONPATH": str(HUB_DIR),
                    "CONSORTIUM_HUB_GUEST_TIMEOUT": str(s.guest_timeout),
                    "CONSORTIUM_HUB_CULL_EVERY": str(s.cull_every),
                    "CONSORTIUM_HUB_MODE": s.mode,
                    "CONSORTIUM_HUB_DATA_DIR": str(s.data_dir),
                },
            }
        )
        roles.append(
            {"name": "guest-cleanup", "scopes": GUEST_CLEANUP_SCOPES, "services": ["guest-cleanup"]}
        )
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def configure(c: Any, s: HubSettings) -> None:
    """Apply ``s`` to the JupyterHub config object ``c``."""
    check_runtime(s)
    s.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(s.data_dir, 0o700)
    hub = c.JupyterHub
    hub.bind_url = s.bind_url
    if s.public_url:
        # An https public URL makes the hub's cookies Secure.
        hub.public_url = s.public_url
    if s.subdomain_host:
        hub.subdomain_host = s.subdomain_host
    hub.hub_bind_url = f"http://127.0.0.1:{s.hub_port}"
    db = private_file(s.data_dir / "jupyterhub.sqlite")
    hub.db_url = f"sqlite:///{db}"
    hub.cookie_secret_file = str(s.data_dir / "jupyterhub_cookie_secret")
    hub.pid_file = str(s.data_dir / "jupyterhub.pid")
    hub.default_url = CHAT_URL
    hub.shutdown_on_logout = True
    # A hub restart leaves the proxy and the user servers running.
    hub.cleanup_servers = False
    hub.cleanup_proxy = False
    hub.template_paths = [str(HUB_DIR / "templates")]
    hub.template_vars = {"consortium_guests": s.guests}
    proxy = c.ConfigurableHTTPProxy
    proxy.command = [str(HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy")]
    proxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
    proxy.pid_file = str(s.data_dir / "proxy.pid")
    # Kept in a file, so a restarted hub can talk to the proxy it left running.
    proxy.auth_token = private_file(
        s.data_dir / "proxy_auth_token", lambda: secrets.token_hex(32)
    ).read_text()
    configure_authenticator(c, s)
    configure_spawner(c, s)
    configure_services(c, s)
