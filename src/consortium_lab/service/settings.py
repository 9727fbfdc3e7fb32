"""The gateway service's settings: one traitlets ``Configurable``, as JupyterHub's are.

Every setting is a trait with ``help=`` and ``config=True``, so the settings document
themselves: ``consortium-lab gateway --help-settings`` and ``--help-all`` print them, and
``--generate-config`` writes a commented Python config file (``c.ServiceSettings.port = ...``;
see :mod:`~consortium_lab.service.settings_docs`).
A settings file is YAML, JSON or such a Python file; the names are the same in all three.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    validate,
)

from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.calls import ModelSettings
from consortium_lab.gateway.ledger import check_acl_subject, check_quota_subject
from consortium_lab.gateway.quotas import QuotaPolicy
from consortium_lab.gateway.routing import Strategy
from consortium_lab.service.settings_hub import HubServiceSettings
from consortium_lab.service.traits import ModelDict, ModelTrait, PathTrait

__all__ = [
    "ADMIN_TOKENS_ENV",
    "METRICS_TOKENS_ENV",
    "USER_HASH_SECRET_ENV",
    "ServiceSettings",
    "SettingsError",
    "read_settings_file",
]

ADMIN_TOKENS_ENV = "CONSORTIUM_GATEWAY_ADMIN_TOKENS"
METRICS_TOKENS_ENV = "CONSORTIUM_GATEWAY_METRICS_TOKENS"
USER_HASH_SECRET_ENV = "CONSORTIUM_LAB_USER_HASH_SECRET"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Settings holding paths: relative ones in a settings file are relative to that file's folder.
_PATH_SETTINGS = ("ledger", "tokens_file", "prices")


class SettingsError(ValueError):
    """A setting that is unknown or has a bad value; the message starts with its name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if not message.startswith(name) else message)
        self.name = name


def _positive(settings: Any, proposal: Any) -> Any:
    value = proposal["value"]
    if value is not None and value <= 0:
        raise TraitError(f"{proposal['trait'].name}: must be greater than 0 (got {value})")
    return value


class ServiceSettings(HubServiceSettings):
    """Every setting of the consortium-lab gateway service.

    A settings file (YAML, JSON, or a Python config file like this one) may set any of them;
    relative paths in it are relative to its folder. Command-line options override the file.
    """

    host = Unicode(
        "127.0.0.1",
        help="Address to listen on. Loopback by default; put a TLS proxy in front of anything "
        "else.",
    ).tag(config=True)
    port = Integer(
        8750, min=0, max=65535, help="Port to listen on (0: any free port, printed)."
    ).tag(config=True)
    models = List(
        Unicode(),
        default_value=["*"],
        help="The llm models offered (ids or glob patterns). Only models whose keys the service "
        "has are ever offered.",
    ).tag(config=True)
    exclude_models = List(
        Unicode(),
        default_value=["demo-*"],
        help="Models never offered (ids or glob patterns); by default the offline demo models.",
    ).tag(config=True)
    groups = Dict(
        value_trait=List(Unicode()),
        key_trait=Unicode(),
        help="Logical model -> llm models serving it (several deployments of one model).",
    ).tag(config=True)
    routing = Enum(
        list(get_args(Strategy)),
        default_value="least-busy",
        help="How a group's deployment is chosen: least-busy or lowest-latency.",
    ).tag(config=True)
    fallbacks = Dict(
        value_trait=List(Unicode()),
        key_trait=Unicode(),
        help="Model -> models tried in order when it fails for good.",
    ).tag(config=True)
    model_settings = ModelDict(
        ModelSettings, help="Per-model gateway settings: {model: {cache, ttl, concurrency}}."
    ).tag(config=True)
    retries = Integer(2, min=0, help="Further attempts after a transient failure.").tag(config=True)
    backoff = Float(
        0.5, min=0, help="First wait between attempts in seconds (doubles, with jitter)."
    ).tag(config=True)
    max_backoff = Float(
        30.0, min=0, help="Longest wait between attempts (caps a provider's Retry-After)."
    ).tag(config=True)
    timeout = Float(
        None,
        allow_none=True,
        help="Cap on any call's total time in seconds, on top of limits (None: no cap).",
    ).tag(config=True)
    cooldown = Float(
        30.0, min=0, help="Seconds a model rests after cooldown_after failures in a row."
    ).tag(config=True)
    cooldown_after = Integer(3, min=1, help="Failed calls in a row before a rest.").tag(config=True)
    limits = ModelTrait(
        Limits,
        help="Per-call limits: first_token_timeout, total_timeout (seconds) and "
        "max_output_tokens (a request's max_tokens lowers it). Token quotas refuse a call whose "
        "output cap exceeds what is left, so keep max_output_tokens in proportion.",
    ).tag(config=True)
    ledger = PathTrait(
        help="The SQLite ledger file (usage, quota policies and counters, access rules). "
        "Default: <data folder>/gateway/ledger.db. Ignored when redis is set.",
    ).tag(config=True)
    redis = Unicode(
        None,
        allow_none=True,
        help="A redis:// (or TLS rediss://) URL: ledger, quota counters and (unless cache says "
        "otherwise) the response cache live there, shared by every replica. A password goes in "
        "the URL (redis://:PASSWORD@host:6379/0) and is shown as *** in every message; rediss "
        "takes ?ssl_ca_certs=/path/ca.pem.",
    ).tag(config=True)
    cache = Unicode(
        "auto",
        allow_none=True,
        help="Response cache: 'auto' (Redis when redis is set, else a diskcache folder 'cache' "
        "beside the ledger), 'none', a folder, or a redis:// URL.",
    ).tag(config=True)
    cache_ttl = Float(
        7 * 24 * 3600.0,
        allow_none=True,
        help="Seconds a cached answer lives (None: until evicted).",
    ).tag(config=True)
    shared_cache = Bool(
        False,
        help="Serve one user's cached answer to another user who asks the same. Off by default: "
        "a shared cache tells one user what another asked.",
    ).tag(config=True)
    tokens_file = PathTrait(
        help="Static tokens (JSON or YAML): {tokens: {TOKEN: {user, groups, admin}}} or "
        "{TOKEN: USER}. Re-read when it changes.",
    ).tag(config=True)
    admin_tokens = List(
        Unicode(),
        help="Tokens for the /admin API (and /metrics when metrics_require_admin). Also from "
        f"${ADMIN_TOKENS_ENV} (space-separated). They cannot call models.",
    ).tag(config=True, secret=True)
    default_quota = ModelTrait(
        QuotaPolicy,
        default_value=None,
        allow_none=True,
        help="Baseline quota of every user (None: unlimited). The admin API can override it.",
    ).tag(config=True)
    quotas = ModelDict(
        QuotaPolicy,
        help="Baseline quotas by subject ('user:NAME' or 'group:NAME'); a user's own beats "
        "their groups' (the most generous of those), which beat the default.",
    ).tag(config=True)
    acl = Dict(
        value_trait=List(Unicode()),
        key_trait=Unicode(),
        default_value={"*": ["*"]},
        help="Baseline access rules: subject ('*', 'user:NAME', 'group:NAME') -> model "
        "patterns. The most specific rule decides: a user's own, else their groups' (union), "
        "else '*'. Default: everyone may use every offered model.",
    ).tag(config=True)
    prices = PathTrait(
        help="Price table (JSON) for the cost of calls; default $CONSORTIUM_LAB_PRICES or the "
        "packaged sample.",
    ).tag(config=True)
    provider_http = Enum(
        ["aiohttp", "httpx"],
        default_value="aiohttp",
        help="HTTP client under the openai SDK that llm's OpenAI plugin uses to reach "
        "providers: 'aiohttp' (the SDK's own aiohttp adapter, openai.DefaultAioHttpClient: "
        "measured 25-30% less service CPU per streamed answer than httpx at 50-200 concurrent "
        "streams) or 'httpx' (the SDK's default).",
    ).tag(config=True)
    lean_streaming = Bool(
        True,
        help="Stream plain chat prompts to llm's OpenAI-compatible models through the lean "
        "transport (one shared aiohttp session, orjson per chunk, no SDK chunk objects: about a "
        "third of the CPU per stream); False sends every call through the openai SDK "
        "(provider_http). Tools, attachments and Azure-style models always use the SDK.",
    ).tag(config=True)
    log_to_llm = Bool(
        False,
        help="Also log every call (prompt and answer) to the service's llm log database. Off by "
        "default: the service keeps aggregates, not what people asked.",
    ).tag(config=True)
    metrics_require_admin = Bool(
        False, help="Require an admin token for /metrics (ignored when metrics_tokens is set)."
    ).tag(config=True)
    metrics_tokens = List(
        Unicode(),
        help="Tokens that may read /metrics and nothing else (for Prometheus). When set, "
        "/metrics answers 401 to every other caller, admins included: an admin token is too "
        f"powerful for a scraper. Also from ${METRICS_TOKENS_ENV} (space-separated).",
    ).tag(config=True, secret=True)
    usage_retention_days = Integer(
        None,
        allow_none=True,
        help="Days usage records are kept in the ledger (None: for ever). Older ones are "
        "deleted at start and every hour (SQLite: vacuumed; Redis: the stream trimmed); "
        "each purge is written to the audit log. Cached answers expire by cache_ttl.",
    ).tag(config=True)
    user_hash_secret = Unicode(
        None,
        allow_none=True,
        help="Secret key of the user-name pseudonym (HMAC-SHA256) that replaces a user's name "
        "in usage records when they delete their data (DELETE /v1/me/data), the same one the "
        "admin analytics show when hashing names. Without it that endpoint answers 503. "
        f"Default ${USER_HASH_SECRET_ENV}.",
    ).tag(config=True, secret=True)
    max_request_bytes = Integer(
        4 * 1024 * 1024, min=1024, help="Largest request body accepted (bytes)."
    ).tag(config=True)
    models_refresh = Float(
        60.0, min=0, help="Seconds between re-reading which models llm offers."
    ).tag(config=True)
    max_lifetime = Float(
        None,
        allow_none=True,
        help="Stop by itself after this many seconds (tests, demos; None: run until stopped).",
    ).tag(config=True)
    log_level = Unicode(
        "INFO", help="Logging level of the service: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    ).tag(config=True)

    _timeouts = validate("timeout", "cache_ttl", "max_lifetime")(_positive)

    @validate("quotas")
    def _quota_subjects(self, proposal: Any) -> dict[str, QuotaPolicy]:
        for subject in proposal["value"]:
            if subject == "default" or not subject.startswith(("user:", "group:")):
                raise TraitError(
                    f"quotas: keys are 'user:NAME' or 'group:NAME' (got {subject!r}; use "
                    "default_quota for everyone)"
                )
            _subject_check(check_quota_subject, subject, "quotas")
        return dict(proposal["value"])

    @validate("acl")
    def _acl_subjects(self, proposal: Any) -> dict[str, list[str]]:
        for subject in proposal["value"]:
            _subject_check(check_acl_subject, subject, "acl")
        return dict(proposal["value"])

    @validate("usage_retention_days")
    def _retention(self, proposal: Any) -> int | None:
        value = proposal["value"]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TraitError(
                "usage_retention_days: must be a whole number of days, 1 or more, or None to "
                f"keep records for ever (got {value!r})"
            )
        return int(value)

    @validate("redis")
    def _redis_url(self, proposal: Any) -> str | None:
        value = proposal["value"]
        if value is not None and not str(value).startswith(_REDIS_SCHEMES):
            from consortium_lab.gateway.ledger import mask_url

            raise TraitError(
                f"redis: expected a redis://, rediss:// or unix:// URL (got {mask_url(value)!r})"
            )
        return value

    @validate("log_level")
    def _level(self, proposal: Any) -> str:
        level = str(proposal["value"]).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise TraitError("log_level: must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    # -- derived ------------------------------------------------------------------------------
    def ledger_path(self) -> Path:
        """The SQLite ledger file (the default when ``ledger`` is not set)."""
        if self.ledger is not None:
            return Path(self.ledger).expanduser()
        from consortium_lab.paths import data_dir

        return data_dir() / "gateway" / "ledger.db"

    def cache_spec(self) -> str | None:
        """What :class:`~consortium_lab.gateway.core.Gateway` gets as ``cache`` (``None``: no
        cache)."""
        if self.cache is None or self.cache.lower() == "none":
            return None
        if self.cache.lower() == "auto":
            return self.redis or str(self.ledger_path().parent / "cache")
        return str(self.cache)

    def baseline_quotas(self) -> dict[str, QuotaPolicy]:
        """The configured quotas by subject, ``default`` included when set."""
        base = dict(self.quotas)
        if self.default_quota is not None:
            base["default"] = self.default_quota
        return base

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def names(cls) -> list[str]:
        """Every setting's name, in the order they are declared."""
        traits = cls.class_traits(config=True)
        return [name for klass in reversed(cls.__mro__) for name in vars(klass) if name in traits]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceSettings:
        """Settings from a mapping of setting names to values.

        Raises:
            SettingsError: an unknown name or a bad value (the message starts with the name).
        """
        traits = cls.class_traits(config=True)
        settings = cls()
        for name, value in data.items():
            trait = traits.get(name)
            if trait is None:
                import difflib

                close = difflib.get_close_matches(str(name), list(traits), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise SettingsError(str(name), f"unknown setting{hint}")
            try:
                setattr(settings, name, value)
            except TraitError as exc:
                # A secret's value must never reach a log or a terminal.
                detail = f"expected {trait.info()}" if trait.metadata.get("secret") else str(exc)
                raise SettingsError(name, detail) from None
        return settings

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> ServiceSettings:
        """Settings from a YAML, JSON or Python config file (if given) with ``overrides`` on top.

        Admin tokens in ``$CONSORTIUM_GATEWAY_ADMIN_TOKENS`` are added to the file's.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file cannot be read as settings (the message names the file).
            SettingsError: a setting is unknown or wrong (the message names it).
        """
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path).expanduser()
            data = _resolve_paths(read_settings_file(path), path.parent)
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        settings = cls.from_dict(data)
        env_admin = os.environ.get(ADMIN_TOKENS_ENV, "").split()
        if env_admin:
            settings.admin_tokens = [*settings.admin_tokens, *env_admin]
        env_metrics = os.environ.get(METRICS_TOKENS_ENV, "").split()
        if env_metrics:
            settings.metrics_tokens = [*settings.metrics_tokens, *env_metrics]
        if settings.user_hash_secret is None and os.environ.get(USER_HASH_SECRET_ENV):
            settings.user_hash_secret = os.environ[USER_HASH_SECRET_ENV]
        return settings


def _subject_check(check: Any, subject: str, name: str) -> None:
    try:
        check(subject)
    except ValueError as exc:
        raise TraitError(f"{name}: {exc}") from None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings a YAML, JSON or Python (traitlets) config file holds, by name."""
    if path.suffix.lower() == ".py":
        return _read_python_config(path)
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
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    return dict(loaded)


def _read_python_config(path: Path) -> dict[str, Any]:
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        config = PyFileConfigLoader(path.name, str(path.parent)).load_config()
    except ConfigFileNotFound as exc:
        raise FileNotFoundError(f"{path}: no such file") from exc
    except Exception as exc:  # the file's own code failed
        raise ValueError(f"{path}: could not run the config file: {exc}") from exc
    others = sorted(k for k in config if k != ServiceSettings.__name__)
    if others:
        raise ValueError(f"{path}: only c.ServiceSettings is read (found c.{', c.'.join(others)})")
    return dict(config.get(ServiceSettings.__name__, {}))


def _resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    data = dict(data)
    for key in _PATH_SETTINGS:
        value = data.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            data[key] = str(folder / value)
    cache = data.get("cache")
    if (
        isinstance(cache, str)
        and cache.lower() not in ("auto", "none")
        and "://" not in cache
        and not Path(cache).expanduser().is_absolute()
    ):
        data["cache"] = str(folder / cache)
    return data
