"""The hub's settings, read from ``CONSORTIUM_HUB_*`` environment variables only.

:func:`read_settings` checks every variable at once and raises :class:`SettingsError` listing
every missing or malformed one, so an operator fixes them in one round (docs/hub.md lists them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "CONSORTIUM_HUB_"
# Lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 32
# characters: safe as a Unix user name (after `cl-`), a URL path part and a SQLite file name.
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,31}$"
USERNAME_RULE = (
    "a user name must match ^[a-z0-9][a-z0-9._-]{0,31}$: lowercase letters, digits, '.', '_' "
    "and '-', starting with a letter or digit, at most 32 characters"
)
MODES = ("try-it", "isolated")
AUTHS = ("oidc", "github")
MIN_TOKEN_LENGTH = 32


class SettingsError(ValueError):
    """Every problem found in the ``CONSORTIUM_HUB_*`` variables, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"consortium hub: {len(problems)} setting(s) missing or malformed "
            f"(see docs/hub.md):\n{lines}"
        )


@dataclass(frozen=True)
class Service:
    """An externally managed hub service: where the hub's proxy finds it, and its token."""

    name: str
    url: str
    token: str


@dataclass(frozen=True)
class HubSettings:
    """The checked settings (field ``x`` comes from ``CONSORTIUM_HUB_X``)."""

    mode: str
    data_dir: Path
    bind_url: str
    public_url: str
    hub_port: int
    proxy_api_port: int
    auth: str
    client_id: str
    client_secret: str
    callback_url: str
    oidc_authorize_url: str
    oidc_token_url: str
    oidc_userdata_url: str
    username_claim: str
    scopes: list[str]
    groups_claim: str
    allow_all: bool
    allowed_users: set[str]
    admin_users: set[str]
    allowed_groups: set[str]
    gateway: Service
    gateway_admin_token: str
    analytics: Service | None
    idle_timeout: int
    cull_every: int
    guests: bool
    guest_timeout: int
    pool_size: int
    home_base: Path
    subdomain_host: str
    retention_days: int | None
    secure_cookies: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "secure_cookies", self.public_url.startswith("https://"))


class _Reader:
    """Reads variables, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str:
        value = self.env.get(PREFIX + name, "").strip()
        if value:
            return value
        if default is None:
            self.problems.append(f"{PREFIX}{name} is not set")
            return ""
        return default

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(name, default)
        if value and value not in choices:
            self.problems.append(f"{PREFIX}{name}={value!r}: expected one of {', '.join(choices)}")
        return value

    def flag(self, name: str) -> bool:
        value = self.text(name, "0").lower()
        if value not in ("0", "1", "true", "false", "yes", "no"):
            self.problems.append(f"{PREFIX}{name}={value!r}: expected 0 or 1")
            return False
        return value in ("1", "true", "yes")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{PREFIX}{name}={raw!r}: expected a whole number")
            return default
        if not low <= value <= high:
            self.problems.append(f"{PREFIX}{name}={value}: expected {low} to {high}")
        return value

    def url(self, name: str, default: str | None = None, *, origin_only: bool = False) -> str:
        value = self.text(name, default)
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problems.append(f"{PREFIX}{name}={value!r}: expected an http(s) URL")
        elif origin_only and parts.path not in ("", "/"):
            self.problems.append(f"{PREFIX}{name}={value!r}: expected no path")
        return value.rstrip("/") if origin_only else value

    def names(self, name: str) -> set[str]:
        values = {v.strip() for v in self.text(name, "").split(",") if v.strip()}
        bad = sorted(v for v in values if not re.match(USERNAME_PATTERN, v))
        if bad:
            self.problems.append(f"{PREFIX}{name}: {', '.join(bad)}: {USERNAME_RULE}")
        return values

    def token(self, name: str, *, required: bool = True) -> str:
        value = self.text(name, None if required else "")
        if value and len(value) < MIN_TOKEN_LENGTH:
            self.problems.append(
                f"{PREFIX}{name}: too short ({len(value)} characters, at least "
                f"{MIN_TOKEN_LENGTH}; `openssl rand -hex 32` makes one)"
            )
        return value


def read_settings(env: Mapping[str, str]) -> HubSettings:
    """The hub's settings from ``env``; raises :class:`SettingsError` naming every bad one."""
    r = _Reader(env)
    mode = r.choice("MODE", MODES)
    data_dir = r.text("DATA_DIR")
    if data_dir and not Path(data_dir).is_absolute():
        r.problems.append(f"{PREFIX}DATA_DIR={data_dir!r}: expected an absolute path")
    bind_url = r.url("BIND_URL", "http://127.0.0.1:8000", origin_only=True)
    public_url = r.url("PUBLIC_URL", "", origin_only=True)
    hub_port = r.integer("HUB_PORT", 8081, 1, 65535)
    proxy_api_port = r.integer("PROXY_API_PORT", 8001, 1, 65535)
    auth = r.choice("AUTH", AUTHS)
    client_id = r.text("OAUTH_CLIENT_ID")
    client_secret = r.text("OAUTH_CLIENT_SECRET")
    callback_url = r.url("OAUTH_CALLBACK_URL", f"{public_url or bind_url}/hub/oauth_callback")
    oidc_required = auth == "oidc"
    endpoints = {
        key: (r.url(f"OIDC_{key}_URL") if oidc_required else r.text(f"OIDC_{key}_URL", ""))
        for key in ("AUTHORIZE", "TOKEN", "USERDATA")
    }
    groups_claim = r.text("GROUPS_CLAIM", "")
    if groups_claim and auth != "oidc":
        r.problems.append(
            f"{PREFIX}GROUPS_CLAIM: groups from a claim need CONSORTIUM_HUB_AUTH=oidc"
        )
    allowed_groups = r.names("ALLOWED_GROUPS")
    if allowed_groups and not groups_claim:
        r.problems.append(f"{PREFIX}ALLOWED_GROUPS needs {PREFIX}GROUPS_CLAIM (the groups' claim)")
    allow_all = r.flag("ALLOW_ALL")
    allowed_users = r.names("ALLOWED_USERS")
    admin_users = r.names("ADMIN_USERS")
    if not (allow_all or allowed_users or allowed_groups):
        r.problems.append(
            f"no one may log in: set {PREFIX}ALLOW_ALL=1, {PREFIX}ALLOWED_USERS "
            f"or {PREFIX}ALLOWED_GROUPS"
        )
    gateway = Service("consortium-gateway", r.url("GATEWAY_URL"), r.token("GATEWAY_TOKEN"))
    # A gateway admin token (not the service's hub token): logins go to its audit log.
    gateway_admin_token = r.token("GATEWAY_ADMIN_TOKEN", required=False)
    analytics_url = r.url("ANALYTICS_URL", "")
    analytics_token = r.token("ANALYTICS_TOKEN", required=False)
    if bool(analytics_url) != bool(analytics_token):
        r.problems.append(f"{PREFIX}ANALYTICS_URL and {PREFIX}ANALYTICS_TOKEN go together")
    analytics = (
        Service("consortium-analytics", analytics_url, analytics_token)
        if analytics_url and analytics_token
        else None
    )
    idle_timeout = r.integer("IDLE_TIMEOUT", 3600, 5, 30 * 86400)
    cull_every = r.integer("CULL_EVERY", min(300, max(idle_timeout // 2, 1)), 1, 86400)
    retention_text = r.text("RETENTION_DAYS", "")
    retention_days = None
    if retention_text:
        retention_days = r.integer("RETENTION_DAYS", 0, 1, 36500)
    home_base = r.text("HOME_BASE", "/home")
    if not Path(home_base).is_absolute():
        r.problems.append(f"{PREFIX}HOME_BASE={home_base!r}: expected an absolute path")
    settings = HubSettings(
        mode=mode,
        data_dir=Path(data_dir),
        bind_url=bind_url,
        public_url=public_url,
        hub_port=hub_port,
        proxy_api_port=proxy_api_port,
        auth=auth,
        client_id=client_id,
        client_secret=client_secret,
        callback_url=callback_url,
        oidc_authorize_url=endpoints["AUTHORIZE"],
        oidc_token_url=endpoints["TOKEN"],
        oidc_userdata_url=endpoints["USERDATA"],
        username_claim=r.text("OIDC_USERNAME_CLAIM", "preferred_username"),
        scopes=r.text("OIDC_SCOPES", "openid profile email").split(),
        groups_claim=groups_claim,
        allow_all=allow_all,
        allowed_users=allowed_users,
        admin_users=admin_users,
        allowed_groups=allowed_groups,
        gateway=gateway,
        gateway_admin_token=gateway_admin_token,
        analytics=analytics,
        idle_timeout=idle_timeout,
        cull_every=cull_every,
        guests=r.flag("GUESTS"),
        guest_timeout=r.integer("GUEST_TIMEOUT", 3600, 5, 30 * 86400),
        pool_size=r.integer("POOL_SIZE", 1, 0, 8),
        home_base=Path(home_base),
        subdomain_host=r.url("SUBDOMAIN_HOST", "", origin_only=True),
        retention_days=retention_days,
    )
    known = {f"{PREFIX}{name}" for name in VARIABLES}
    unknown = sorted(n for n in env if n.startswith(PREFIX) and n not in known)
    # A typo would otherwise silently leave a default in place.
    r.problems += [f"{n}: unknown variable (typo?)" for n in unknown]
    if r.problems:
        raise SettingsError(r.problems)
    return settings


# Every variable read above (docs/hub.md documents each; a test checks the two agree).
VARIABLES = (
    "MODE",
    "DATA_DIR",
    "BIND_URL",
    "PUBLIC_URL",
    "HUB_PORT",
    "PROXY_API_PORT",
    "AUTH",
    "OAUTH_CLIENT_ID",
    "OAUTH_CLIENT_SECRET",
    "OAUTH_CALLBACK_URL",
    "OIDC_AUTHORIZE_URL",
    "OIDC_TOKEN_URL",
    "OIDC_USERDATA_URL",
    "OIDC_USERNAME_CLAIM",
    "OIDC_SCOPES",
    "GROUPS_CLAIM",
    "ALLOW_ALL",
    "ALLOWED_USERS",
    "ADMIN_USERS",
    "ALLOWED_GROUPS",
    "GATEWAY_URL",
    "GATEWAY_TOKEN",
    "GATEWAY_ADMIN_TOKEN",
    "ANALYTICS_URL",
    "ANALYTICS_TOKEN",
    "IDLE_TIMEOUT",
    "CULL_EVERY",
    "GUESTS",
    "GUEST_TIMEOUT",
    "POOL_SIZE",
    "HOME_BASE",
    "SUBDOMAIN_HOST",
    "RETENTION_DAYS",
)
