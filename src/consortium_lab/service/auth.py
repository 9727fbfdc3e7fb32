"""Who a request comes from: bearer tokens resolved to an :class:`Identity`.

Two authenticators: :class:`StaticTokens` (a file of tokens, for a standalone service) and
:class:`~consortium_lab.service.hub_auth.HubTokens` (JupyterHub API tokens, checked with
JupyterHub's own ``HubAuth``). :class:`Gatekeeper` reads a request's
``Authorization`` header, accepts the service's admin tokens itself and asks the authenticator
about the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from consortium_lab.service.errors import ApiError
from consortium_lab.service.metrics import ServiceMetrics
from consortium_lab.service.settings import ServiceSettings

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "AuthUnavailable",
    "Authenticator",
    "Gatekeeper",
    "Identity",
    "ScopeMissing",
    "StaticTokens",
    "build_authenticator",
    "parse_tokens",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to."""

    user: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    """May use the /admin API."""
    chat: bool = True
    """May call models (admin-only tokens may not)."""
    token_id: str | None = field(default=None, compare=False)
    """Which token it was, for the audit log's first use of each token: the hub's token id, or
    a static token's digest prefix (never the token). Not part of who, so not compared."""


class Authenticator(Protocol):
    """Resolves a bearer token to an :class:`Identity` (``None``: not a valid token)."""

    async def authenticate(self, token: str) -> Identity | None: ...

    async def close(self) -> None: ...


class AuthUnavailable(Exception):
    """The authority that checks tokens could not be asked (a 503, not a 401)."""


class ScopeMissing(Exception):
    """A valid token that lacks the scope this service needs (a 403 naming the scope)."""

    def __init__(self, scope: str, why: str = "") -> None:
        super().__init__(f"the token lacks the scope {scope}" + (f" ({why})" if why else ""))
        self.scope = scope


def digest(token: str) -> str:
    """The SHA-256 hex digest kept instead of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(data: Any, *, source: str = "tokens") -> dict[str, Identity]:
    """Identities by token from ``{tokens: {TOKEN: SPEC}}`` or ``{TOKEN: SPEC}``, where SPEC is
    a user name or ``{user, groups, admin}``. Error messages never contain a token."""
    if isinstance(data, dict) and "tokens" in data and isinstance(data["tokens"], dict):
        data = data["tokens"]
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of token -> user")
    result: dict[str, Identity] = {}
    for position, (token, spec) in enumerate(data.items(), 1):
        where = f"{source}: entry {position}"
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"{where}: the token must be a non-empty string")
        if isinstance(spec, str):
            spec = {"user": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("user"), str) or not spec["user"]:
            raise ValueError(f"{where}: expected a user name or {{user, groups, admin}}")
        unknown = set(spec) - {"user", "groups", "admin"}
        if unknown:
            raise ValueError(f"{where} ({spec['user']}): unknown keys {sorted(unknown)}")
        groups = spec.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"{where} ({spec['user']}): groups must be a list of names")
        result[token] = Identity(
            user=spec["user"],
            groups=tuple(groups),
            admin=bool(spec.get("admin", False)),
            token_id="static-" + digest(token)[:16],
        )
    return result


class StaticTokens:
    """Tokens from a file (or a mapping), for a standalone service.

    The file (JSON or YAML) is ``{"tokens": {"TOKEN": {"user": "alice", "groups": ["staff"]},
    "TOKEN2": "bob"}}`` (the ``tokens`` level is optional; ``"admin": true`` also allows the
    admin API). It is re-read when its modification time changes, so adding a user needs no
    restart; a broken file is reported in the log and the previous tokens stay in force. Only
    SHA-256 digests of the tokens are kept in memory.
    """

    def __init__(
        self, tokens: Mapping[str, Identity] | None = None, *, path: str | Path | None = None
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._by_digest: dict[str, Identity] = {digest(t): i for t, i in (tokens or {}).items()}
        self._mtime: int | None = None
        if self.path is not None:
            self._load(strict=True)

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokens:
        """Tokens from ``path`` (raises ``ValueError`` naming the bad entry, never a token)."""
        return cls(path=path)

    def _load(self, *, strict: bool) -> None:
        assert self.path is not None
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime == self._mtime:
                return
            text = self.path.read_text(encoding="utf-8")
            if self.path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
            tokens = parse_tokens(data, source=str(self.path))
        except Exception as exc:  # unreadable, not JSON/YAML, or a bad entry
            if strict:
                raise ValueError(f"cannot read tokens file {self.path}: {exc}") from exc
            logger.error("tokens file %s not reloaded: %s", self.path, exc)
            return
        self._by_digest = {digest(t): i for t, i in tokens.items()}
        self._mtime = mtime

    async def authenticate(self, token: str) -> Identity | None:
        if self.path is not None:
            self._load(strict=False)
        return self._by_digest.get(digest(token))

    async def close(self) -> None:
        return None


def build_authenticator(settings: ServiceSettings) -> Authenticator:
    """The authenticator the settings ask for."""
    auth = settings.auth or ("hub" if settings.hub_api_url else "static")
    if auth == "hub":
        url = settings.hub_api_url or os.environ.get("JUPYTERHUB_API_URL")
        if not url:
            raise ValueError("auth 'hub' needs hub_api_url (or $JUPYTERHUB_API_URL)")
        token = settings.hub_api_token or os.environ.get("JUPYTERHUB_API_TOKEN")
        from consortium_lab.service.hub_auth import HubTokens

        return HubTokens(
            url,
            service_name=settings.hub_service_name or "",
            api_token=token,
            cache_ttl=settings.hub_cache_ttl,
            admins_are_admins=settings.hub_admins_are_admins,
        )
    if settings.tokens_file is None:
        logger.warning("no tokens_file: only admin tokens are accepted")
        return StaticTokens()
    return StaticTokens.from_file(settings.tokens_file)


class Gatekeeper:
    """Checks a request's bearer token: admin tokens here, the rest with the authenticator.

    It also remembers each user's groups as last seen, for quotas and the admin API.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        admin_tokens: Iterable[str],
        metrics: ServiceMetrics,
        *,
        metrics_tokens: Iterable[str] = (),
        first_use: Callable[[Identity], Awaitable[None]] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.metrics = metrics
        self._admin_digests = {digest(t) for t in admin_tokens}
        self._metrics_digests = {digest(t) for t in metrics_tokens}
        self._groups: dict[str, tuple[str, ...]] = {}
        self.first_use = first_use
        """Told the first time this process sees each token id (the audit log's hook)."""
        self._seen: set[str] = set()

    async def check_metrics(self, request: web.Request, *, require_admin: bool) -> None:
        """Allow ``GET /metrics`` or raise 401/403: with metrics tokens configured only they
        may read it (401 for anyone else, admins included); otherwise an admin token when
        ``require_admin``, else anyone."""
        if not self._metrics_digests:
            if require_admin:
                await self.identify(request, admin=True)
            return
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and digest(token.strip()) in self._metrics_digests:
            return
        self.metrics.auth_failures.labels(reason="not_metrics").inc()
        raise ApiError(
            401,
            "/metrics needs a metrics token (metrics_tokens).",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def groups_of(self, user: str) -> tuple[str, ...]:
        """The user's groups when their token was last checked (none if never)."""
        return self._groups.get(user, ())

    async def identify(self, request: web.Request, *, admin: bool = False) -> Identity:
        """The identity of the request's token; an :class:`ApiError` (401, 403 or 503) when it
        has none, or may not do what ``admin`` says it wants."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if not header or scheme.lower() not in ("bearer", "token") or not token:
            self.metrics.auth_failures.labels(reason="missing").inc()
            raise ApiError(
                401,
                "Missing API key: send 'Authorization: Bearer <token>'.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if digest(token) in self._admin_digests:
            identity: Identity | None = Identity(user="admin", admin=True, chat=False)
        else:
            try:
                identity = await self.authenticator.authenticate(token)
            except ScopeMissing as exc:
                self.metrics.auth_failures.labels(reason="scope_missing").inc()
                raise ApiError(
                    403,
                    f"This token may not use this service: {exc}.",
                    type="permission_error",
                    code="scope_missing",
                    param=exc.scope,
                ) from None
            except AuthUnavailable as exc:
                logger.error("%s", exc)
                raise ApiError(
                    503,
                    "The token could not be checked right now: JupyterHub, which vouches for "
                    "tokens, did not answer. Try again shortly.",
                    type="server_error",
                    code="auth_unavailable",
                ) from None
        if identity is None:
            self.metrics.auth_failures.labels(reason="invalid").inc()
            raise ApiError(
                401,
                "Invalid API key.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if admin and not identity.admin:
            self.metrics.auth_failures.labels(reason="not_admin").inc()
            raise ApiError(
                403,
                "This token may not use the admin API.",
                type="permission_error",
                code="not_admin",
            )
        if not admin and not identity.chat:
            raise ApiError(
                403,
                "Admin tokens cannot call models; use a user's token.",
                type="permission_error",
                code="admin_token",
            )
        if not admin:
            self._groups[identity.user] = identity.groups
        if identity.token_id and identity.token_id not in self._seen:
            if self.first_use is not None:
                await self.first_use(identity)  # may fail (ledger down): then asked again
            self._seen.add(identity.token_id)
        return identity

    async def close(self) -> None:
        """Release the authenticator."""
        await self.authenticator.close()
