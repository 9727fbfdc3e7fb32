"""The gateway as an HTTP service speaking the OpenAI chat-completions protocol.

``consortium-lab gateway`` runs it. Kernels reach it with ``llm``'s own OpenAI-compatible model
support (see :func:`consortium_lab.apps.connect`), so a user's kernel holds no provider key: the
service holds them (its own ``llm`` key store and environment) and every call passes the
in-process :class:`~consortium_lab.gateway.core.Gateway` here, with its cache, retries, fallbacks,
quotas and metrics.

Endpoints::

    POST /v1/chat/completions   JSON, or SSE chunks ending with ``data: [DONE]`` (``stream``);
                                ``stream_options.include_usage`` adds a final usage chunk
    GET  /v1/models             the models the caller may use
    GET  /metrics               Prometheus text: the gateway's metrics and the service's own
    GET  /health                liveness and the ledger's state (no authentication)
    /admin/...                  quotas, access rules and usage (admin tokens; see below)

Requests carry ``Authorization: Bearer <token>``. A token is resolved to an :class:`Identity`
(user, groups) by an authenticator: :class:`StaticTokens` (a file of tokens, for a standalone
service) or :class:`HubTokens` (JupyterHub API tokens). Quotas and the response cache are kept
per user (a cache shared across users is an explicit setting). Usage, quota policies and
access rules live in the service's :mod:`~consortium_lab.gateway.ledger` and survive restarts.

Admin API (``Authorization: Bearer <admin token>``; bodies and answers are JSON)::

    GET    /admin/quotas                      baseline, overrides and effective policies
    PUT    /admin/quotas/default              body: a QuotaPolicy (fields below)
    PUT    /admin/quotas/users/{name}         body: a QuotaPolicy
    PUT    /admin/quotas/groups/{name}        body: a QuotaPolicy
    DELETE /admin/quotas/{default|users/{name}|groups/{name}}   back to the baseline
    GET    /admin/acl                         baseline, overrides and effective rules
    PUT    /admin/acl/everyone                body: {"models": ["pattern", ...]}
    PUT    /admin/acl/users/{name}            body: {"models": [...]}
    PUT    /admin/acl/groups/{name}           body: {"models": [...]}
    DELETE /admin/acl/{everyone|users/{name}|groups/{name}}     back to the baseline
    GET    /admin/usage                       aggregates; query: since, until (ISO 8601 or
                                              epoch seconds), user, model,
                                              group_by=user,model,served_by,outcome,day
    GET    /admin/usage/records               raw records, newest first; query: since, until,
                                              user, model, limit (default 100)
    GET    /admin/users/{name}                effective policy, quota windows used, allowed
                                              models (groups as last seen, or ?groups=a,b)
    DELETE /admin/users/{name}/counters       forget the user's use of the current windows

A QuotaPolicy is ``{"requests_per_minute", "requests_per_day", "tokens_per_minute",
"tokens_per_day", "max_output_tokens_per_call"}``, each a positive integer or null (no limit).
Changes apply to the next request, on every replica sharing the ledger.

Errors always have OpenAI's shape ``{"error": {"message", "type", "code", "param"}}`` and never
carry a stack trace: 400 (bad JSON or field, the field named in ``param``), 401 (no or bad
token), 403 (model or endpoint not allowed), 404 (unknown model ``model_not_found``, unknown
endpoint), 413 (body too large), 429 (quota, with ``Retry-After``), 502/503/504 (the provider
failed after retries: its own message, ``code`` the failure kind), 500 (a bug: a generic
message with a reference that is logged with the traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import json.encoder
import logging
import math
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.core import CallFailed, CallOutcome, CallRequest, Gateway, ModelSettings
from consortium_lab.gateway.ledger import (
    Ledger,
    Rules,
    UsageRecord,
    check_acl_subject,
    check_quota_subject,
)
from consortium_lab.gateway.quotas import QuotaManager, QuotaPolicy
from consortium_lab.gateway.routing import Strategy

if TYPE_CHECKING:
    from aiohttp import ClientSession, web

__all__ = [
    "ApiError",
    "Authenticator",
    "GatewayService",
    "HubTokens",
    "Identity",
    "ServiceSettings",
    "StaticTokens",
    "settings_help",
]

logger = logging.getLogger(__name__)

OWNED_BY = "consortium-lab"
ADMIN_TOKENS_ENV = "CONSORTIUM_GATEWAY_ADMIN_TOKENS"


# -- settings ---------------------------------------------------------------------------------
class ServiceSettings(BaseModel):
    """Every setting of the gateway service (a config file, JSON or YAML, holds any of them).

    Relative paths in a config file are relative to that file's folder.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "127.0.0.1",
        description="Address to listen on. Loopback by default; put a TLS proxy in front of "
        "anything else.",
    )
    port: int = Field(
        8750, ge=0, le=65535, description="Port to listen on (0: any free port, printed)."
    )
    models: list[str] = Field(
        default_factory=lambda: ["*"],
        description="The llm models offered (ids or glob patterns). Only models whose keys the "
        "service has are ever offered.",
    )
    exclude_models: list[str] = Field(
        default_factory=lambda: ["demo-*"],
        description="Models never offered (ids or glob patterns); by default the offline demo "
        "models.",
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Logical model -> llm models serving it (several deployments of one model).",
    )
    routing: Strategy = Field(
        "least-busy",
        description="How a group's deployment is chosen: least-busy or lowest-latency.",
    )
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="Model -> models tried in order when it fails for good."
    )
    model_settings: dict[str, ModelSettings] = Field(
        default_factory=dict,
        description="Per-model gateway settings: {model: {cache, ttl, concurrency}}.",
    )
    retries: int = Field(2, ge=0, description="Further attempts after a transient failure.")
    backoff: float = Field(
        0.5, ge=0, description="First wait between attempts in seconds (doubles, with jitter)."
    )
    max_backoff: float = Field(
        30.0, ge=0, description="Longest wait between attempts (caps a provider's Retry-After)."
    )
    timeout: float | None = Field(
        None, gt=0, description="Cap on any call's total time in seconds, on top of limits."
    )
    cooldown: float = Field(
        30.0, ge=0, description="Seconds a model rests after cooldown_after failures in a row."
    )
    cooldown_after: int = Field(3, ge=1, description="Failed calls in a row before a rest.")
    limits: Limits = Field(
        default_factory=Limits,
        description="Per-call limits: first_token_timeout, total_timeout (seconds) and "
        "max_output_tokens (a request's max_tokens lowers it). Token quotas refuse a call "
        "whose output cap exceeds what is left, so keep max_output_tokens in proportion.",
    )
    ledger: Path | None = Field(
        None,
        description="The SQLite ledger file (usage, quota policies and counters, access rules). "
        "Default: <data folder>/gateway/ledger.db. Ignored when redis is set.",
    )
    redis: str | None = Field(
        None,
        description="A redis:// URL: ledger, quota counters and (unless cache says otherwise) "
        "the response cache live there, shared by every replica.",
    )
    cache: str | None = Field(
        "auto",
        description="Response cache: 'auto' (Redis when redis is set, else a diskcache folder "
        "'cache' beside the ledger), 'none', a folder, or a redis:// URL.",
    )
    cache_ttl: float | None = Field(
        7 * 24 * 3600.0, gt=0, description="Seconds a cached answer lives (null: until evicted)."
    )
    shared_cache: bool = Field(
        False,
        description="Serve one user's cached answer to another user who asks the same. Off by "
        "default: a shared cache tells one user what another asked.",
    )
    auth: Literal["static", "hub"] | None = Field(
        None,
        description="How user tokens are checked: 'static' (tokens_file) or 'hub' (JupyterHub "
        "API). Default: hub when hub_api_url is set, else static.",
    )
    tokens_file: Path | None = Field(
        None,
        description="Static tokens (JSON or YAML): {tokens: {TOKEN: {user, groups, admin}}} or "
        "{TOKEN: USER}. Re-read when it changes.",
    )
    admin_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Tokens for the /admin API (and /metrics when metrics_require_admin). "
        f"Also from ${ADMIN_TOKENS_ENV} (space-separated). They cannot call models.",
    )
    hub_api_url: str | None = Field(
        None,
        description="JupyterHub's API URL (e.g. http://127.0.0.1:8081/hub/api); default "
        "$JUPYTERHUB_API_URL when auth is 'hub'.",
    )
    hub_api_token: SecretStr | None = Field(
        None,
        description="This service's own JupyterHub API token, to read a user's groups when "
        "their token cannot; default $JUPYTERHUB_API_TOKEN.",
    )
    hub_cache_ttl: float = Field(
        60.0, ge=0, description="Seconds a JupyterHub token check is remembered."
    )
    hub_admins_are_admins: bool = Field(
        False, description="JupyterHub admins may use the /admin API with their own token."
    )
    default_quota: QuotaPolicy | None = Field(
        None,
        description="Baseline quota of every user (null: unlimited). The admin API can "
        "override it.",
    )
    quotas: dict[str, QuotaPolicy] = Field(
        default_factory=dict,
        description="Baseline quotas by subject ('user:NAME' or 'group:NAME'); a user's own "
        "beats their groups' (the most generous of those), which beat the default.",
    )
    acl: dict[str, list[str]] = Field(
        default_factory=lambda: {"*": ["*"]},
        description="Baseline access rules: subject ('*', 'user:NAME', 'group:NAME') -> model "
        "patterns. The most specific rule decides: a user's own, else their groups' (union), "
        "else '*'. Default: everyone may use every offered model.",
    )
    prices: Path | None = Field(
        None,
        description="Price table (JSON) for the cost of calls; default "
        "$CONSORTIUM_LAB_PRICES or the packaged sample.",
    )
    provider_http: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="HTTP client under the openai SDK that llm's OpenAI plugin uses to reach "
        "providers: 'aiohttp' (the SDK's own aiohttp adapter, openai.DefaultAioHttpClient: "
        "measured 25-30% less service CPU per streamed answer than httpx at 50-200 concurrent "
        "streams) or 'httpx' (the SDK's default).",
    )
    log_to_llm: bool = Field(
        False,
        description="Also log every call (prompt and answer) to the service's llm log "
        "database. Off by default: the service keeps aggregates, not what people asked.",
    )
    metrics_require_admin: bool = Field(False, description="Require an admin token for /metrics.")
    max_request_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted (bytes)."
    )
    models_refresh: float = Field(
        60.0, ge=0, description="Seconds between re-reading which models llm offers."
    )
    max_lifetime: float | None = Field(
        None, gt=0, description="Stop by itself after this many seconds (tests, demos)."
    )
    log_level: str = Field("INFO", description="Logging level of the service.")

    @field_validator("quotas")
    @classmethod
    def _quota_subjects(cls, value: dict[str, QuotaPolicy]) -> dict[str, QuotaPolicy]:
        for subject in value:
            if subject == "default" or not subject.startswith(("user:", "group:")):
                raise ValueError(
                    f"quotas: keys are 'user:NAME' or 'group:NAME' (got {subject!r}; use "
                    "default_quota for everyone)"
                )
            check_quota_subject(subject)
        return value

    @field_validator("acl")
    @classmethod
    def _acl_subjects(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for subject in value:
            check_acl_subject(subject)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    # -- derived ------------------------------------------------------------------------------
    def ledger_path(self) -> Path:
        """The SQLite ledger file (the default when ``ledger`` is not set)."""
        if self.ledger is not None:
            return self.ledger.expanduser()
        from consortium_lab.paths import data_dir

        return data_dir() / "gateway" / "ledger.db"

    def cache_spec(self) -> str | None:
        """What :class:`Gateway` gets as ``cache`` (``None``: no cache)."""
        if self.cache is None or self.cache.lower() == "none":
            return None
        if self.cache.lower() == "auto":
            return self.redis or str(self.ledger_path().parent / "cache")
        return self.cache

    def baseline_quotas(self) -> dict[str, QuotaPolicy]:
        """The configured quotas by subject, ``default`` included when set."""
        base = dict(self.quotas)
        if self.default_quota is not None:
            base["default"] = self.default_quota
        return base

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> ServiceSettings:
        """Settings from a JSON or YAML file (if given) with ``overrides`` on top.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not JSON/YAML mapping (the message names the file).
            pydantic.ValidationError: a setting is wrong (the message names it).
        """
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path).expanduser()
            text = path.read_text(encoding="utf-8")
            try:
                if path.suffix.lower() == ".json":
                    loaded = json.loads(text)
                else:
                    import yaml

                    loaded = yaml.safe_load(text)
            except ValueError as exc:  # JSONDecodeError and yaml's errors are ValueErrors
                raise ValueError(f"{path}: not valid JSON/YAML: {exc}") from exc
            except Exception as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from exc
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of settings at the top level")
            data = dict(loaded)
            for key in ("ledger", "tokens_file", "prices"):
                value = data.get(key)
                if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                    data[key] = str(path.parent / value)
            cache = data.get("cache")
            if (
                isinstance(cache, str)
                and cache.lower() not in ("auto", "none")
                and "://" not in cache
                and not Path(cache).expanduser().is_absolute()
            ):
                data["cache"] = str(path.parent / cache)
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        settings = cls.model_validate(data)
        env_admin = os.environ.get(ADMIN_TOKENS_ENV, "").split()
        if env_admin:
            settings.admin_tokens = [*settings.admin_tokens, *(SecretStr(t) for t in env_admin)]
        return settings


def settings_help() -> str:
    """Every setting with its default and description (``consortium-lab gateway
    --help-settings``)."""
    lines = [
        "Gateway service settings (a JSON or YAML config file may set any of them; CLI options"
        " override the file):",
        "",
    ]
    for name, info in ServiceSettings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump()
        elif isinstance(default, list) and default and isinstance(default[0], SecretStr):
            default = ["***"]
        lines.append(f"  {name}  (default: {json.dumps(default, default=str)})")
        lines.append(f"      {info.description}")
    lines += [
        "",
        "QuotaPolicy fields: " + ", ".join(QuotaPolicy.model_fields) + " (positive integers or "
        "null).",
        "limits fields: " + ", ".join(Limits.model_fields) + ".",
    ]
    return "\n".join(lines)


# -- identities and authenticators ------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Who a token belongs to."""

    user: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    """May use the /admin API."""
    chat: bool = True
    """May call models (admin-only tokens may not)."""


class Authenticator(Protocol):
    """Resolves a bearer token to an :class:`Identity` (``None``: not a valid token)."""

    async def authenticate(self, token: str) -> Identity | None: ...

    async def close(self) -> None: ...


class AuthUnavailable(Exception):
    """The authority that checks tokens could not be asked (a 503, not a 401)."""


def _digest(token: str) -> str:
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
            user=spec["user"], groups=tuple(groups), admin=bool(spec.get("admin", False))
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
        self._by_digest: dict[str, Identity] = {_digest(t): i for t, i in (tokens or {}).items()}
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
        self._by_digest = {_digest(t): i for t, i in tokens.items()}
        self._mtime = mtime

    async def authenticate(self, token: str) -> Identity | None:
        if self.path is not None:
            self._load(strict=False)
        return self._by_digest.get(_digest(token))

    async def close(self) -> None:
        return None


class HubTokens:
    """JupyterHub API tokens: asks the hub who a token belongs to.

    ``GET {hub_api_url}/user`` with ``Authorization: token <user's token>`` gives the token's
    owner (``name``, ``groups``, ``admin``). When that answer lacks the groups (the token's
    scopes do not cover them) and the service has its own API token, ``GET
    {hub_api_url}/users/{name}`` with the service's token fills them in. Answers are remembered
    for ``cache_ttl`` seconds (keyed by the token's digest; refusals for a few seconds only);
    a hub that cannot be reached gives :class:`AuthUnavailable` (HTTP 503), never a 401.

    Tested against a real JupyterHub in the hub integration, not here.
    """

    def __init__(
        self,
        hub_api_url: str,
        *,
        api_token: str | None = None,
        cache_ttl: float = 60.0,
        admins_are_admins: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not hub_api_url.startswith(("http://", "https://")):
            raise ValueError(f"hub_api_url must be an http(s) URL (got {hub_api_url!r})")
        self.hub_api_url = hub_api_url.rstrip("/")
        self.api_token = api_token
        self.cache_ttl = cache_ttl
        self.admins_are_admins = admins_are_admins
        self.timeout = timeout
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        self._session: ClientSession | None = None

    def _client(self) -> ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _get(self, path: str, token: str) -> tuple[int, Any]:
        import aiohttp

        try:
            async with self._client().get(
                f"{self.hub_api_url}{path}", headers={"Authorization": f"token {token}"}
            ) as resp:
                if resp.status >= 400:
                    return resp.status, None
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AuthUnavailable(f"JupyterHub API at {self.hub_api_url} failed: {exc}") from exc

    async def authenticate(self, token: str) -> Identity | None:
        key = _digest(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        status, model = await self._get("/user", token)
        if status in (401, 403, 404):
            self._cache[key] = (now + min(self.cache_ttl, 5.0), None)
            return None
        if status >= 400 or not isinstance(model, dict) or not model.get("name"):
            raise AuthUnavailable(f"JupyterHub API answered {status} for /user")
        name = str(model["name"])
        groups = model.get("groups")
        if groups is None and self.api_token:
            status, full = await self._get(f"/users/{name}", self.api_token)
            if status < 400 and isinstance(full, dict):
                groups = full.get("groups")
        identity = Identity(
            user=name,
            groups=tuple(str(g) for g in groups or ()),
            admin=self.admins_are_admins and bool(model.get("admin")),
        )
        self._cache[key] = (now + self.cache_ttl, identity)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return identity

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def build_authenticator(settings: ServiceSettings) -> Authenticator:
    """The authenticator the settings ask for."""
    auth = settings.auth or ("hub" if settings.hub_api_url else "static")
    if auth == "hub":
        url = settings.hub_api_url or os.environ.get("JUPYTERHUB_API_URL")
        if not url:
            raise ValueError("auth 'hub' needs hub_api_url (or $JUPYTERHUB_API_URL)")
        token = (
            settings.hub_api_token.get_secret_value()
            if settings.hub_api_token
            else os.environ.get("JUPYTERHUB_API_TOKEN")
        )
        return HubTokens(
            url,
            api_token=token,
            cache_ttl=settings.hub_cache_ttl,
            admins_are_admins=settings.hub_admins_are_admins,
        )
    if settings.tokens_file is None:
        logger.warning("no tokens_file: only admin tokens are accepted")
        return StaticTokens()
    return StaticTokens.from_file(settings.tokens_file)


# -- errors -----------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }

    def response(self) -> web.Response:
        from aiohttp import web

        return web.json_response(self.body(), status=self.status, headers=self.headers)


_FAILURE_STATUS = {
    "quota": 429,
    "timeout": 504,
    "rate_limit": 503,
    "cooldown": 503,
    "connection": 503,
    "bad_request": 400,
    "context_window": 400,
}


def failure_error(exc: CallFailed) -> ApiError:
    """The HTTP error for a call that failed for good (its own message, ``code`` its kind)."""
    status = _FAILURE_STATUS.get(exc.kind, 502)
    headers: dict[str, str] = {}
    if exc.retry_after is not None and status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.kind == "quota":
        # A quota will not lift within a client's retry loop: tell the openai SDK not to try.
        headers["x-should-retry"] = "false"
        return ApiError(
            429, exc.message, type="insufficient_quota", code="quota_exceeded", headers=headers
        )
    if status == 400:
        code = "context_length_exceeded" if exc.kind == "context_window" else exc.kind
        return ApiError(400, exc.message, type="invalid_request_error", code=code)
    return ApiError(status, exc.message, type="provider_error", code=exc.kind, headers=headers)


# -- the chat request -------------------------------------------------------------------------
class ChatMessage(BaseModel):
    """One OpenAI chat message (content checked by :func:`messages_to_call`)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Any = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The chat-completions fields the service reads; others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int | None = Field(None, ge=1, le=1)
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None


def _loc(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "list[str]", "function-after", "function-before"):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def validation_error(exc: ValidationError) -> ApiError:
    """A 400 naming the first bad field."""
    first = exc.errors()[0]
    param = _loc(first["loc"]) or None
    message = first["msg"]
    if first["type"] == "missing":
        message = f"missing required field: {param}"
    elif param:
        message = f"{param}: {message}"
    code = "missing_field" if first["type"] == "missing" else "invalid_value"
    return ApiError(400, message, code=code, param=param)


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(
                    400,
                    f"{where}[{index}]: only text content parts are supported",
                    param=f"{where}[{index}]",
                    code="unsupported_content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(
                    400, f"{where}[{index}].text: expected a string", param=f"{where}[{index}].text"
                )
            texts.append(text)
        return "".join(texts)
    raise ApiError(400, f"{where}: expected a string or a list of text parts", param=where)


def messages_to_call(
    messages: Sequence[ChatMessage],
) -> tuple[str | None, tuple[tuple[str, str], ...], str]:
    """OpenAI messages as ``(system, history, prompt)``.

    System (and developer) messages, wherever they are, become the system prompt (joined by
    blank lines); the last message must be the user's and is the prompt; the turns before it
    become ``(user, assistant)`` pairs, consecutive messages of one role joined by blank lines
    (an assistant turn with no user turn before it pairs with an empty user turn).
    """
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if message.role in ("tool", "function"):
            raise ApiError(
                400,
                f"{where}.role: {message.role!r} messages are not supported (no tool calling)",
                param=f"{where}.role",
                code="unsupported_role",
            )
        if message.role == "assistant" and getattr(message, "tool_calls", None):
            raise ApiError(
                400,
                f"{where}.tool_calls: tool calling is not supported",
                param=f"{where}.tool_calls",
                code="unsupported_parameter",
            )
        text = _text(message.content, f"{where}.content")
        if message.role in ("system", "developer"):
            if text:
                system.append(text)
            continue
        role = "user" if message.role == "user" else "assistant"
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{text}" if text else turns[-1][1])
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise ApiError(
            400,
            "messages: the last message (after system messages) must have role 'user'",
            param="messages",
        )
    prompt = turns.pop()[1]
    history: list[tuple[str, str]] = []
    pending_user: str | None = None
    for role, text in turns:
        if role == "user":
            pending_user = text
        else:
            history.append((pending_user or "", text))
            pending_user = None
    if pending_user is not None:  # impossible after merging, kept for safety
        prompt = f"{pending_user}\n\n{prompt}"
    return ("\n\n".join(system) or None), tuple(history), prompt


_OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "max_tokens": ("max_tokens", "max_output_tokens", "max_completion_tokens"),
    "stop": ("stop", "stop_sequences"),
    "seed": ("seed",),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
}


def map_options(
    chat: ChatRequest, supported: frozenset[str], options_class: type[BaseModel] | None
) -> dict[str, Any]:
    """OpenAI parameters as llm options of a model that supports ``supported`` options.

    A parameter the model has no option for is dropped (as OpenAI-compatible servers do); one
    it has is checked by the model's own ``Options`` (a bad value is a 400 naming the
    parameter).
    """
    given: dict[str, Any] = {
        "temperature": chat.temperature,
        "top_p": chat.top_p,
        "max_tokens": chat.max_completion_tokens or chat.max_tokens,
        "stop": chat.stop,
        "seed": chat.seed,
        "presence_penalty": chat.presence_penalty,
        "frequency_penalty": chat.frequency_penalty,
    }
    options: dict[str, Any] = {}
    param_of: dict[str, str] = {}
    for param, value in given.items():
        if value is None:
            continue
        name = next((n for n in _OPTION_NAMES[param] if n in supported), None)
        if name is None:
            continue
        if name == "stop" and isinstance(value, list):
            if len(value) != 1:
                raise ApiError(
                    400,
                    "stop: this model takes a single stop sequence",
                    param="stop",
                    code="invalid_value",
                )
            value = value[0]
        if name == "stop_sequences" and isinstance(value, str):
            value = [value]
        options[name] = value
        param_of[name] = param
    fmt = chat.response_format or {}
    if fmt.get("type") == "json_object" and "json_object" in supported:
        options["json_object"] = True
        param_of["json_object"] = "response_format"
    elif fmt.get("type") not in (None, "text", "json_object"):
        raise ApiError(
            400,
            f"response_format: type {fmt.get('type')!r} is not supported",
            param="response_format",
            code="unsupported_parameter",
        )
    if options and options_class is not None:
        try:
            options_class(**options)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else ""
            bad = param_of.get(name, name) or None
            raise ApiError(400, f"{bad}: {first['msg']}", param=bad, code="invalid_value") from None
    return options


# -- the models offered -----------------------------------------------------------------------
@dataclass(frozen=True)
class Offered:
    """The models the service offers now."""

    ids: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    """Every id and alias -> the model id."""
    options: Mapping[str, frozenset[str]] = field(default_factory=dict)
    options_class: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _llm_options(model_id: str) -> tuple[frozenset[str], type[BaseModel] | None]:
    import llm

    model: Any
    try:
        model = llm.get_async_model(model_id)
    except llm.UnknownModelError:
        try:
            model = llm.get_model(model_id)
        except llm.UnknownModelError:
            return frozenset(), None
    options_class = getattr(model, "Options", None)
    fields = getattr(options_class, "model_fields", {}) or {}
    return frozenset(fields), options_class


def discover_models(settings: ServiceSettings) -> Offered:
    """Which models to offer: usable llm models matching ``models`` and not ``exclude_models``,
    and the configured groups (blocking: reads llm's plugins and files)."""
    from consortium_lab.config.catalog import list_models

    ids: list[str] = []
    names: dict[str, str] = {}
    options: dict[str, frozenset[str]] = {}
    classes: dict[str, type[BaseModel] | None] = {}
    usable = list_models()
    usable_ids = {info.model_id for info in usable}
    for info in usable:
        if not _matches(info.model_id, settings.models) or _matches(
            info.model_id, settings.exclude_models
        ):
            continue
        ids.append(info.model_id)
        names[info.model_id] = info.model_id
        for alias in info.aliases:
            names.setdefault(alias, info.model_id)
        options[info.model_id], classes[info.model_id] = _llm_options(info.model_id)
    for group, deployments in settings.groups.items():
        if not _matches(group, settings.models) or _matches(group, settings.exclude_models):
            continue
        present = [d for d in deployments if d in usable_ids]
        if not present:
            continue
        ids.append(group)
        names[group] = group
        found = [_llm_options(d) for d in present]
        options[group] = frozenset.intersection(*(f for f, _ in found))
        classes[group] = found[0][1]
    return Offered(tuple(sorted(set(ids))), names, options, classes)


# -- the service ------------------------------------------------------------------------------
class _RuleQuotas(QuotaManager):
    """A QuotaManager whose policies come from the service's current :class:`Rules`."""

    def __init__(
        self,
        rules: Callable[[], Rules],
        groups_of: Callable[[str], tuple[str, ...]],
        storage: str,
    ) -> None:
        super().__init__(storage=storage)
        self._rules = rules
        self._groups_of = groups_of

    def policy_for(self, user: str) -> QuotaPolicy:
        return self._rules().quota_for(user, self._groups_of(user))


class ServiceMetrics:
    """The service's own Prometheus metrics (prefix ``consortium_service_``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.http_requests = Counter(
            "consortium_service_http_requests",
            "HTTP requests answered, by route, method and status.",
            ("route", "method", "status"),
            registry=reg,
        )
        self.http_duration = Histogram(
            "consortium_service_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of a stream).",
            ("route",),
            registry=reg,
        )
        self.chat_requests = Counter(
            "consortium_service_chat_requests",
            "Chat completions by requested model and outcome (ok or the failure kind).",
            ("model", "outcome", "stream"),
            registry=reg,
        )
        self.auth_failures = Counter(
            "consortium_service_auth_failures",
            "Requests refused for authentication, by reason.",
            ("reason",),
            registry=reg,
        )
        self.active_streams = Gauge(
            "consortium_service_active_streams", "Chat streams being sent now.", registry=reg
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _ChunkFrames:
    """The SSE frames of one streamed answer, with the fields every chunk repeats encoded once.

    A content chunk is the pre-encoded head, the text as a JSON string and the pre-encoded
    tail: byte for byte what ``_sse`` makes of the whole chunk, without building and encoding
    the dict each time.
    """

    _MARK = "\ufdd0content\ufdd0"  # a noncharacter: never in a model name

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.cid = cid
        self.created = created
        self.model = model
        self._frames: dict[bool, tuple[bytes, bytes] | None] = {}

    def chunk(self, delta: dict[str, Any], finish: str | None, include_usage: bool) -> bytes:
        data: dict[str, Any] = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data)

    def content(self, text: str, include_usage: bool) -> bytes:
        """``chunk({"content": text}, None, include_usage)``, fast."""
        if include_usage not in self._frames:
            whole = self.chunk({"content": self._MARK}, None, include_usage)
            parts = whole.split(_json_str(self._MARK))
            self._frames[include_usage] = (parts[0], parts[1]) if len(parts) == 2 else None
        frame = self._frames[include_usage]
        if frame is None:  # the mark occurs elsewhere too: encode the whole chunk
            return self.chunk({"content": text}, None, include_usage)
        return frame[0] + _json_str(text) + frame[1]


class GatewayService:
    """The gateway HTTP service: build with settings, then :meth:`serve` (or :meth:`app`).

    Args:
        settings: the :class:`ServiceSettings`.
        authenticator: overrides the one the settings describe.
        ledger: overrides the one the settings describe.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        authenticator: Authenticator | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        from consortium_lab.gateway.ledger import open_ledger
        from consortium_lab.gateway.metrics import Metrics
        from consortium_lab.gateway.pricing import PriceTable

        self.settings = settings
        self.ledger = ledger or open_ledger(settings.redis or settings.ledger_path())
        self._rules = self.ledger.rules(settings.baseline_quotas(), settings.acl)
        self._revision = self.ledger.revision()
        self._groups: dict[str, tuple[str, ...]] = {}
        self.quotas = _RuleQuotas(
            lambda: self._rules, lambda u: self._groups.get(u, ()), self.ledger.quota_storage
        )
        self.gateway = Gateway(
            cache=settings.cache_spec(),
            ttl=settings.cache_ttl,
            retries=settings.retries,
            backoff=settings.backoff,
            max_backoff=settings.max_backoff,
            fallbacks=settings.fallbacks,
            timeout=settings.timeout,
            cooldown=settings.cooldown,
            cooldown_after=settings.cooldown_after,
            groups=settings.groups,
            routing=settings.routing,
            model_settings=settings.model_settings,
            quotas=self.quotas,
            prices=PriceTable.load(settings.prices),
            metrics=Metrics(),
            user="anonymous",
            shared_cache=settings.shared_cache,
            log_to_llm=settings.log_to_llm,
            http_transport=settings.provider_http,
        )
        self.metrics = ServiceMetrics()
        self.authenticator = authenticator or build_authenticator(settings)
        self._admin = {_digest(t.get_secret_value()) for t in settings.admin_tokens}
        self._offered = Offered()
        self._offered_at = -math.inf
        self._offered_lock = asyncio.Lock()
        self.url: str | None = None

    # -- state ----------------------------------------------------------------------------
    async def _refresh_rules(self) -> Rules:
        # Checked on every request, so a change applies to the next one on every replica; a
        # SQLite ledger answers without a worker thread (a WAL read never waits).
        revision = self.ledger.revision_nowait()
        if revision is None:
            revision = await asyncio.to_thread(self.ledger.revision)
        if revision != self._revision:
            rules = await asyncio.to_thread(
                self.ledger.rules, self.settings.baseline_quotas(), self.settings.acl
            )
            self._rules, self._revision = rules, revision
        return self._rules

    async def offered(self, *, refresh: bool = False) -> Offered:
        """The models offered now (re-read every ``models_refresh`` seconds or on demand)."""
        age = time.monotonic() - self._offered_at
        if refresh or age > self.settings.models_refresh:
            async with self._offered_lock:
                if refresh or time.monotonic() - self._offered_at > self.settings.models_refresh:
                    self._offered = await asyncio.to_thread(discover_models, self.settings)
                    self._offered_at = time.monotonic()
        return self._offered

    async def _resolve(self, name: str) -> tuple[str, Offered]:
        offered = await self.offered()
        model = offered.names.get(name)
        if model is None and time.monotonic() - self._offered_at > 2.0:
            offered = await self.offered(refresh=True)
            model = offered.names.get(name)
        if model is None:
            raise ApiError(
                404,
                f"The model '{name}' does not exist or is not offered by this gateway.",
                code="model_not_found",
                param="model",
            )
        return model, offered

    # -- authentication -------------------------------------------------------------------
    async def _identity(self, request: web.Request, *, admin: bool = False) -> Identity:
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
        if _digest(token) in self._admin:
            identity: Identity | None = Identity(user="admin", admin=True, chat=False)
        else:
            try:
                identity = await self.authenticator.authenticate(token)
            except AuthUnavailable as exc:
                logger.error("%s", exc)
                raise ApiError(
                    503,
                    "The token could not be checked right now; try again shortly.",
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
        return identity

    # -- the app ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application."""
        from aiohttp import web

        app = web.Application(
            middlewares=[self._middleware()], client_max_size=self.settings.max_request_bytes
        )
        r = app.router
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_get("/v1/models", self.list_models)
        r.add_get("/metrics", self.metrics_endpoint)
        r.add_get("/health", self.health)
        r.add_get("/admin/quotas", self.admin_get_quotas)
        r.add_put("/admin/quotas/default", self.admin_put_quota)
        r.add_put("/admin/quotas/{kind:users|groups}/{name}", self.admin_put_quota)
        r.add_delete("/admin/quotas/default", self.admin_delete_quota)
        r.add_delete("/admin/quotas/{kind:users|groups}/{name}", self.admin_delete_quota)
        r.add_get("/admin/acl", self.admin_get_acl)
        r.add_put("/admin/acl/everyone", self.admin_put_acl)
        r.add_put("/admin/acl/{kind:users|groups}/{name}", self.admin_put_acl)
        r.add_delete("/admin/acl/everyone", self.admin_delete_acl)
        r.add_delete("/admin/acl/{kind:users|groups}/{name}", self.admin_delete_acl)
        r.add_get("/admin/usage", self.admin_usage)
        r.add_get("/admin/usage/records", self.admin_records)
        r.add_get("/admin/users/{name}", self.admin_user)
        r.add_delete("/admin/users/{name}/counters", self.admin_reset_user)
        return app

    def _middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Answers every error in OpenAI's shape and counts every request."""
        from aiohttp import web

        @web.middleware
        async def middleware(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            start = time.monotonic()
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "other"
            response: web.StreamResponse
            try:
                response = await handler(request)
            except ApiError as exc:
                response = exc.response()
            except web.HTTPException as exc:
                response = _http_error(request, exc).response()
            except asyncio.CancelledError:
                raise
            except Exception:
                ref = uuid.uuid4().hex[:12]
                logger.exception(
                    "internal error (ref %s) on %s %s", ref, request.method, request.path
                )
                response = ApiError(
                    500,
                    f"The gateway hit an internal error (reference {ref}); it has been logged.",
                    type="server_error",
                    code="internal_error",
                ).response()
            self.metrics.http_requests.labels(
                route=route, method=request.method, status=str(response.status)
            ).inc()
            self.metrics.http_duration.labels(route=route).observe(time.monotonic() - start)
            return response

        return middleware

    # -- endpoints ----------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        ok = await asyncio.to_thread(self.ledger.check)
        offered = await self.offered()
        return web.json_response(
            {
                "status": "ok" if ok else "degraded",
                "ledger": "ok" if ok else "unreachable",
                "models": len(offered.ids),
            },
            status=200 if ok else 503,
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from consortium_lab.gateway.metrics import CONTENT_TYPE

        if self.settings.metrics_require_admin:
            await self._identity(request, admin=True)
        body = self.gateway.metrics.render() + self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def list_models(self, request: web.Request) -> web.Response:
        from aiohttp import web

        identity = await self._identity(request)
        rules = await self._refresh_rules()
        offered = await self.offered()
        data = [
            {"id": mid, "object": "model", "created": 0, "owned_by": OWNED_BY}
            for mid in offered.ids
            if rules.allows(identity.user, identity.groups, mid)
        ]
        return web.json_response({"object": "list", "data": data})

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"The body is not valid JSON: {exc}", code="invalid_json") from None

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        received = time.time()
        identity = await self._identity(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
        try:
            chat = ChatRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        for name in ("tools", "functions"):
            if getattr(chat, name):
                raise ApiError(
                    400,
                    f"{name}: tool calling is not supported by this gateway",
                    param=name,
                    code="unsupported_parameter",
                )
        model, offered = await self._resolve(chat.model)
        rules = await self._refresh_rules()
        if not rules.allows(identity.user, identity.groups, model):
            raise ApiError(
                403,
                f"You are not allowed to use the model '{chat.model}'.",
                type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        system, history, prompt = messages_to_call(chat.messages)
        options = map_options(
            chat, offered.options.get(model, frozenset()), offered.options_class.get(model)
        )
        limits = self.settings.limits
        cap = chat.max_completion_tokens or chat.max_tokens
        if cap is not None and (limits.max_output_tokens is None or cap < limits.max_output_tokens):
            limits = limits.model_copy(update={"max_output_tokens": cap})
        call = CallRequest(
            model=model,
            prompt=prompt,
            system=system,
            history=history,
            options=options,
            limits=limits,
            user=identity.user,
        )
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return await self._stream(request, chat.model, call, include_usage, received)
        return await self._plain(chat.model, call, received)

    async def _record(
        self,
        call: CallRequest,
        received: float,
        outcome: CallOutcome | None,
        failure: CallFailed | None,
        *,
        stream: bool,
        kind: str | None = None,
    ) -> None:
        result = kind or ("ok" if outcome is not None else failure.kind if failure else "error")
        self.metrics.chat_requests.labels(
            model=call.model, outcome=result, stream=str(stream).lower()
        ).inc()
        if failure is not None and failure.kind != "quota":
            logger.warning(
                "%s for %s failed (%s): %s", call.model, call.user, failure.kind, failure.message
            )
        record = UsageRecord(
            time=received,
            user=call.user or "anonymous",
            model=call.model,
            outcome=result,
            served_by=outcome.served_by if outcome else failure.served_by if failure else None,
            input_tokens=outcome.usage.input_tokens if outcome else None,
            output_tokens=outcome.usage.output_tokens if outcome else None,
            cost=outcome.cost if outcome else None,
            cached=outcome.cached if outcome else False,
            latency_ms=(
                outcome.latency_ms
                if outcome
                else failure.latency_ms
                if failure
                else (time.time() - received) * 1000
            ),
            stream=stream,
        )
        # The ledger's writer thread stores it with whatever else is queued, in one
        # transaction; the request is answered once it is stored, so every replica sees it.
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[BaseException | None] = loop.create_future()

        def done(error: BaseException | None) -> None:  # in the writer thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, stored, error)

        try:
            self.ledger.record_later(record, done)
        except Exception:
            logger.exception("could not write a usage record to the ledger")
            return
        try:
            # Longer than SQLite's own wait for another process's lock (30 s): only a writer
            # that stopped working ends here, and the request must not hang on it.
            async with asyncio.timeout(60):
                error = await stored
        except TimeoutError:
            logger.error("the ledger's writer did not store a usage record within 60 s")
            return
        if error is not None:
            logger.error(
                "could not write a usage record to the ledger yet (kept, tried again): %s", error
            )

    @staticmethod
    def _usage(outcome: CallOutcome | None) -> dict[str, int]:
        tokens_in = (outcome.usage.input_tokens if outcome else None) or 0
        tokens_out = (outcome.usage.output_tokens if outcome else None) or 0
        return {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }

    @staticmethod
    def _extra(outcome: CallOutcome | None) -> dict[str, Any]:
        if outcome is None:
            return {}
        return {
            "served_by": outcome.served_by,
            "cached": outcome.cached,
            "attempts": outcome.attempts,
            "cost": outcome.cost,
        }

    async def _plain(self, name: str, call: CallRequest, received: float) -> web.Response:
        from aiohttp import web

        try:
            outcome = await self.gateway.call(call)
        except CallFailed as exc:
            await self._record(call, received, None, exc, stream=False)
            if exc.kind != "cut_off" or not exc.partial_text:
                raise failure_error(exc) from None
            text, finish, done = exc.partial_text, "length", None
        else:
            await self._record(call, received, outcome, None, stream=False)
            text, finish, done = outcome.text, "stop", outcome
        payload = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(received),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": self._usage(done),
            "consortium": self._extra(done),
        }
        return web.json_response(payload)

    async def _stream(
        self,
        request: web.Request,
        name: str,
        call: CallRequest,
        include_usage: bool,
        received: float,
    ) -> web.StreamResponse:
        """Stream the call as OpenAI chunks.

        The response starts (status 200) with the first piece of text, so a call refused or
        failed before that still gets its proper status. When the gateway starts an answer over
        (a retry or fallback after part of it was sent), the new text is compared with what was
        sent: while it repeats it nothing is sent, then it continues seamlessly; if it differs,
        the stream ends with an error event (what was sent cannot be taken back).

        Per piece of text, the work is one JSON string encoding into a pre-encoded chunk (see
        :class:`_ChunkFrames`); the pieces that arrived since the last write go out in one
        write, and the end of the stream (finish chunk, usage chunk, ``[DONE]`` and the end of
        the HTTP body) in one more.
        """
        from aiohttp import web

        loop = asyncio.get_running_loop()
        pending: deque[tuple[str, str]] = deque()  # (channel, text) not handled yet
        waiter: asyncio.Future[None] | None = None

        def wake() -> None:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def on_delta(text: str, channel: str) -> None:
            pending.append((channel, text))
            if waiter is not None:
                wake()

        task = asyncio.create_task(self.gateway.call(call, on_delta))
        task.add_done_callback(lambda _: wake())
        frames = _ChunkFrames("chatcmpl-" + uuid.uuid4().hex[:24], int(received), name)
        response: web.StreamResponse | None = None
        sent: list[str] = []  # the text sent, in pieces
        attempt: str | None = None  # text of a restarted attempt, while it repeats ``sent``
        sent_text = ""  # "".join(sent), while a restarted attempt is compared with it

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return frames.chunk(delta, finish, include_usage)

        async def send(data: bytes, *, eof: bool = False) -> None:
            nonlocal response
            if response is None:
                response = web.StreamResponse(
                    status=200,
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",
                    },
                )
                await response.prepare(request)
                self.metrics.active_streams.inc()
                data = chunk({"role": "assistant", "content": ""}) + data
            if eof:
                await response.write_eof(data)
            else:
                await response.write(data)

        async def fail(error: ApiError, before: bytes = b"") -> None:
            await send(before + _sse(error.body()))

        recorded = False
        try:
            while True:
                if not pending:
                    if task.done():
                        break
                    waiter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        waiter = None
                    continue
                out: list[bytes] = []
                while pending:
                    channel, text = pending.popleft()
                    if channel == "restart":
                        attempt = "" if sent else None
                        sent_text = "".join(sent)
                        continue
                    if channel != "text" or not text:
                        continue
                    if attempt is not None:
                        attempt += text
                        if sent_text.startswith(attempt):
                            continue  # still repeating what the client has
                        if not attempt.startswith(sent_text):
                            task.cancel()
                            with contextlib.suppress(asyncio.CancelledError, CallFailed):
                                await task
                            await self._record(
                                call, received, None, None, stream=True, kind="stream_restarted"
                            )
                            recorded = True
                            await fail(
                                ApiError(
                                    502,
                                    "The provider failed mid-answer and its new answer differs"
                                    " from the text already streamed; ask again.",
                                    type="provider_error",
                                    code="stream_restarted",
                                ),
                                b"".join(out),
                            )
                            return response  # type: ignore[return-value]
                        text, attempt = attempt[len(sent_text) :], None
                    sent.append(text)
                    out.append(frames.content(text, include_usage))
                if out:
                    await send(b"".join(out))
            try:
                outcome: CallOutcome | None = task.result()
                failure: CallFailed | None = None
            except CallFailed as exc:
                outcome, failure = None, exc
            await self._record(call, received, outcome, failure, stream=True)
            recorded = True
            text_sent = "".join(sent)
            if failure is not None and (failure.kind != "cut_off" or not text_sent):
                if response is None:
                    raise failure_error(failure)
                await fail(failure_error(failure))
                return response
            if outcome is not None and outcome.text != text_sent:
                await fail(
                    ApiError(
                        502,
                        "The provider's answer changed while it was streamed; ask again.",
                        type="provider_error",
                        code="stream_restarted",
                    )
                )
                return response  # type: ignore[return-value]
            end = [chunk({}, "stop" if outcome is not None else "length")]
            if include_usage:
                usage = {
                    "id": frames.cid,
                    "object": "chat.completion.chunk",
                    "created": frames.created,
                    "model": name,
                    "choices": [],
                    "usage": self._usage(outcome),
                    "consortium": self._extra(outcome),
                }
                end.append(_sse(usage))
            end.append(b"data: [DONE]\n\n")
            await send(b"".join(end), eof=True)
            assert response is not None
            return response
        except ConnectionError:
            # The client went away: stop the model's stream too.
            logger.info("client left a stream of %s", call.model)
            if not recorded:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, CallFailed):
                    await task
                await self._record(call, received, None, None, stream=True, kind="cancelled")
            return response if response is not None else web.Response(status=499)
        except ApiError:
            raise
        except Exception:
            if response is None:
                raise
            ref = uuid.uuid4().hex[:12]
            logger.exception("internal error (ref %s) in a stream", ref)
            with contextlib.suppress(Exception):
                await fail(
                    ApiError(
                        500,
                        f"The gateway hit an internal error (reference {ref}); it has been logged.",
                        type="server_error",
                        code="internal_error",
                    )
                )
            return response
        finally:
            if not task.done():
                task.cancel()
            if response is not None:
                self.metrics.active_streams.dec()

    # -- admin --------------------------------------------------------------------------------
    @staticmethod
    def _subject(request: web.Request, *, acl: bool) -> str:
        kind = request.match_info.get("kind")
        name = request.match_info.get("name")
        if kind is None:
            return "*" if acl else "default"
        subject = f"{'user' if kind == 'users' else 'group'}:{name}"
        try:
            return check_acl_subject(subject) if acl else check_quota_subject(subject)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="name") from None

    async def _admin_json(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
        return body

    async def admin_get_quotas(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        overrides = await asyncio.to_thread(self.ledger.quota_policies)
        rules = await self._refresh_rules()
        dump = lambda policies: {k: v.model_dump() for k, v in sorted(policies.items())}  # noqa: E731
        return web.json_response(
            {
                "baseline": dump(self.settings.baseline_quotas()),
                "overrides": dump(overrides),
                "effective": dump(rules.quotas),
            }
        )

    async def admin_put_quota(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        subject = self._subject(request, acl=False)
        body = await self._admin_json(request)
        try:
            policy = QuotaPolicy.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        await asyncio.to_thread(self.ledger.set_quota, subject, policy)
        await self._refresh_rules()
        logger.info("admin: quota of %s set to %s", subject, policy.model_dump())
        return web.json_response({"subject": subject, "policy": policy.model_dump()})

    async def admin_delete_quota(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        subject = self._subject(request, acl=False)
        await asyncio.to_thread(self.ledger.set_quota, subject, None)
        rules = await self._refresh_rules()
        effective = rules.quotas.get(subject)
        logger.info("admin: quota override of %s removed", subject)
        return web.json_response(
            {"subject": subject, "policy": effective.model_dump() if effective else None}
        )

    async def admin_get_acl(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        overrides = await asyncio.to_thread(self.ledger.acl_rules)
        rules = await self._refresh_rules()
        return web.json_response(
            {
                "baseline": dict(sorted(self.settings.acl.items())),
                "overrides": dict(sorted(overrides.items())),
                "effective": {k: list(v) for k, v in sorted(rules.acl.items())},
            }
        )

    async def admin_put_acl(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        subject = self._subject(request, acl=True)
        body = await self._admin_json(request)
        models = body.get("models")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ApiError(
                400,
                "models: expected a list of model ids or glob patterns ([] allows none)",
                param="models",
                code="missing_field" if models is None else "invalid_value",
            )
        try:
            await asyncio.to_thread(self.ledger.set_acl, subject, models)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="models", code="invalid_value") from None
        await self._refresh_rules()
        logger.info("admin: access of %s set to %s", subject, models)
        return web.json_response({"subject": subject, "models": models})

    async def admin_delete_acl(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        subject = self._subject(request, acl=True)
        await asyncio.to_thread(self.ledger.set_acl, subject, None)
        rules = await self._refresh_rules()
        effective = rules.acl.get(subject)
        logger.info("admin: access override of %s removed", subject)
        return web.json_response(
            {"subject": subject, "models": list(effective) if effective is not None else None}
        )

    @staticmethod
    def _query_filters(request: web.Request) -> dict[str, Any]:
        query = request.query
        filters: dict[str, Any] = {}
        for name in ("since", "until"):
            if name in query:
                filters[name] = _parse_time(query[name], name)
        for name in ("user", "model"):
            if query.get(name):
                filters[name] = query[name]
        return filters

    async def admin_usage(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        filters = self._query_filters(request)
        group_by = [g for g in request.query.get("group_by", "user,model").split(",") if g]
        try:
            rows = await asyncio.to_thread(lambda: self.ledger.usage(group_by=group_by, **filters))
        except ValueError as exc:
            raise ApiError(400, str(exc), param="group_by", code="invalid_value") from None
        return web.json_response({"group_by": group_by, "filters": filters, "rows": rows})

    async def admin_records(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        filters = self._query_filters(request)
        try:
            limit = int(request.query.get("limit", "100"))
            if not 1 <= limit <= 10_000:
                raise ValueError
        except ValueError:
            raise ApiError(
                400, "limit: expected an integer from 1 to 10000", param="limit"
            ) from None
        records = await asyncio.to_thread(lambda: self.ledger.records(limit=limit, **filters))
        return web.json_response({"records": [r.to_dict() for r in records]})

    async def admin_user(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        user = request.match_info["name"]
        groups = (
            tuple(g for g in request.query["groups"].split(",") if g)
            if "groups" in request.query
            else self._groups.get(user, ())
        )
        rules = await self._refresh_rules()
        windows = await asyncio.to_thread(self.quotas.usage, user)
        return web.json_response(
            {
                "user": user,
                "groups": list(groups),
                "policy": rules.quota_for(user, groups).model_dump(),
                "usage": {
                    name: {**w, "resets_at": w["resets_at"].isoformat()}
                    for name, w in windows.items()
                },
                "models": list(rules.patterns_for(user, groups)),
            }
        )

    async def admin_reset_user(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self._identity(request, admin=True)
        user = request.match_info["name"]
        await asyncio.to_thread(self.quotas.reset, user)
        logger.info("admin: quota counters of %s reset", user)
        return web.json_response({"user": user, "reset": True})

    # -- running --------------------------------------------------------------------------
    async def serve(self, *, ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM or ``max_lifetime``; ``ready(url)`` once listening."""
        from aiohttp import web

        await self.offered(refresh=True)
        runner = web.AppRunner(
            self.app(),
            access_log=logging.getLogger("aiohttp.access")
            if logger.isEnabledFor(logging.DEBUG)
            else None,
            shutdown_timeout=5.0,
        )
        await runner.setup()
        sock = _listen(self.settings.host, self.settings.port)
        site = web.SockSite(runner, sock, shutdown_timeout=5.0)
        await site.start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if self.settings.max_lifetime is not None:
            loop.call_later(self.settings.max_lifetime, stop.set)
        logger.info("gateway service listening on %s", self.url)
        if ready is not None:
            ready(self.url)
        try:
            await stop.wait()
        finally:
            logger.info("gateway service stopping")
            await runner.cleanup()
            await self.aclose()

    async def aclose(self) -> None:
        """Release the authenticator, cache, quota storage and ledger."""
        with contextlib.suppress(Exception):
            await self.authenticator.close()
        with contextlib.suppress(Exception):
            await self.gateway.aclose()
        for close in (self.gateway.close, self.quotas.close, self.ledger.close):
            try:
                await asyncio.to_thread(close)
            except Exception:
                logger.exception("error while closing")


def _listen(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _sse(data: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _json_str(text: str) -> bytes:
    """``json.dumps(text).encode()`` (ASCII-escaped, as ``_sse`` encodes strings), directly."""
    return _encode_str(text).encode("ascii")


_encode_str: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring_ascii", None) or (
    json.encoder.encode_basestring_ascii
)


def _settle(future: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not future.done():
        future.set_result(error)


def _parse_time(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            f"{name}: expected ISO 8601 or seconds since the epoch (got {value!r})",
            param=name,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _http_error(request: web.Request, exc: web.HTTPException) -> ApiError:
    status = exc.status
    if status == 404:
        return ApiError(404, f"Unknown endpoint: {request.method} {request.path}", code="not_found")
    if status == 405:
        return ApiError(
            405,
            f"Method {request.method} is not allowed on {request.path}.",
            code="method_not_allowed",
        )
    if status == 413:
        return ApiError(413, "The request body is too large.", code="request_too_large")
    return ApiError(status, exc.reason or "HTTP error", code=None)


def run(settings: ServiceSettings) -> None:
    """Run the service in the foreground (what ``consortium-lab gateway`` does)."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger(__name__).setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # The provider clients log every HTTP request at INFO: the gateway logs what matters.
        for name in ("httpx", "httpx2", "openai", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("listening on %s, beyond this machine: serve it behind TLS", settings.host)

    def ready(url: str) -> None:
        print(f"consortium-lab gateway listening on {url}", flush=True)

    async def main() -> None:
        service = GatewayService(settings)
        await service.serve(ready=ready)

    asyncio.run(main())
