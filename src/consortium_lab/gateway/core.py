"""The gateway: the one place where a model is called.

Every call of the engine (member answers, peer reviews, the arbiter) goes through
:meth:`Gateway.call`, which runs, in order: per-user quota check → cache lookup → for the model
and then each of its fallbacks: cool-down check → group routing → concurrency limit → the
streaming call with its limits (time to first token, total time, output tokens), retried with
exponential backoff and jitter on transient failures (429 honouring ``Retry-After``, 5xx,
timeouts before the first token, dropped or malformed streams) → cache store → usage, cost,
metrics and ``llm``'s own log.

A remote gateway (``Gateway(remote=True)``) is what a kernel uses when the real gateway runs as
a service: no cache, retries, fallbacks or quotas of its own, so nothing is done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import llm
from pydantic import BaseModel

from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.cache import CachedAnswer, ResponseCache, cache_key, open_cache
from consortium_lab.gateway.routing import Router, Strategy
from consortium_lab.gateway.types import Stage, Usage
from consortium_lab.paths import data_dir

logger = logging.getLogger(__name__)

DeltaCallback = Callable[[str, str], None]
"""Called with ``(text, channel)`` for each streamed piece; channel is 'text' or 'reasoning',
or 'restart' (with empty text) when a retry or fallback starts the answer over."""

CacheMode = Literal["use", "bypass", "refresh"]
_DEFAULT = object()

_CONTEXT_WINDOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long", re.I
)
RETRYABLE_KINDS = frozenset({"rate_limit", "server_error", "timeout", "connection", "malformed"})
"""Failure kinds worth another attempt; the others (bad key, bad request, context window,
empty or runaway answers) cannot succeed by asking again."""


@dataclass(frozen=True)
class CallRequest:
    """One model call: who is asked, what, with which history, options and limits."""

    model: str
    prompt: str
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=lambda: Limits())
    stage: Stage = "answer"
    instance: int = 1
    cache: CacheMode = "use"
    user: str | None = None


@dataclass
class CallOutcome:
    """A finished call."""

    text: str
    reasoning: str
    usage: Usage
    latency_ms: float
    first_token_ms: float | None
    served_by: str
    cached: bool = False
    attempts: int = 1
    response_id: str | None = None
    cost: float | None = None


class CallFailed(Exception):
    """A call that produced no usable answer.

    ``kind`` is one of: ``rate_limit``, ``server_error``, ``timeout``, ``connection``,
    ``malformed``, ``auth``, ``bad_request``, ``context_window``, ``empty``, ``cut_off``,
    ``quota``, ``cooldown``, ``error``. ``retry_after`` is the wait the provider asked for.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        partial_text: str = "",
        latency_ms: float | None = None,
        served_by: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        streamed: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.partial_text = partial_text
        self.latency_ms = latency_ms
        self.served_by = served_by
        self.attempts = attempts
        self.retry_after = retry_after
        self.streamed = streamed

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a provider asked for (``Retry-After`` seconds or HTTP date, ``retry-after-ms``)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if ms := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def classify(exc: BaseException) -> str:
    """The failure kind of an exception raised by a model or its client."""
    name = type(exc).__name__
    status = _status(exc)
    if _CONTEXT_WINDOW.search(str(exc)):
        return "context_window"
    if _refused(exc):
        # The openai SDK's aiohttp adapter reports a refused connection as a connect
        # timeout; its cause says what happened.
        return "connection"
    if isinstance(exc, TimeoutError) or name in {
        "APITimeoutError",
        "ReadTimeout",
        "TimeoutException",
    }:
        return "timeout"
    if status == 429 or name == "RateLimitError":
        return "rate_limit"
    if status in (401, 403) or name in {"AuthenticationError", "PermissionDeniedError"}:
        return "auth"
    if status is not None and (status >= 500 or status in (408, 409)):
        return "server_error"
    if status is not None and 400 <= status < 500:
        return "bad_request"
    if isinstance(exc, json.JSONDecodeError):
        return "malformed"
    if isinstance(exc, ConnectionError) or name in {"APIConnectionError", "RemoteProtocolError"}:
        return "connection"
    return "error"


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a connection the OS refused or reset."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, ConnectionError) or isinstance(
            getattr(cause, "os_error", None), ConnectionError
        ):
            return True
        cause = cause.__cause__
    return False


def error_message(exc: BaseException) -> str:
    """The model's own message (the exception type when it has none)."""
    text = str(exc).strip()
    return text or type(exc).__name__


def _history(req: CallRequest) -> list[Any]:
    """System prompt and earlier turns as llm messages; llm appends ``req.prompt`` itself."""
    messages: list[Any] = []
    if req.system:
        messages.append(llm.system(req.system))
    for user_text, assistant_text in req.history:
        messages += [llm.user(user_text), llm.assistant(assistant_text)]
    return messages


def _estimate_tokens(chars: int) -> int:
    # Providers report usage only at the end of a stream; four characters per token is the
    # usual estimate for English text and is good enough for a runaway cut-off.
    return chars // 4


def _max_chars(max_output_tokens: int | None) -> int | None:
    """The most characters whose estimate stays within ``max_output_tokens``: a stream is cut
    off once it has more (``_estimate_tokens(chars) > max_output_tokens``), checked per chunk
    without a division."""
    return None if max_output_tokens is None else (max_output_tokens + 1) * 4 - 1


class ModelSettings(BaseModel):
    """Per-model gateway settings (``Gateway(model_settings={"gpt-4o": {...}})``)."""

    cache: bool = True
    ttl: float | None = None
    concurrency: int | None = None


class Gateway:
    """Calls models for the engine: cache, retries, fallbacks, limits, quotas, metrics.

    Args:
        cache: a folder for diskcache, a ``redis://`` URL, or ``None`` for no cache. The
            default is ``<data folder>/cache``.
        ttl: seconds a cached answer lives (``None``: until evicted).
        retries: further attempts after a transient failure (0 turns retrying off).
        backoff: first wait between attempts, in seconds; doubles each time, with jitter.
        max_backoff: the longest wait between attempts (a longer ``Retry-After`` is honoured
            up to this).
        fallbacks: ``{model: [fallback, ...]}`` tried in order when a model fails for good.
        timeout: a cap on any call's total time, on top of the run's own limits.
        cooldown: seconds a model rests after ``cooldown_after`` failed calls in a row.
        groups: ``{logical_model: [llm_model, ...]}``: one model served by several deployments.
        routing: ``least-busy`` or ``lowest-latency`` choice among a group's deployments.
        model_settings: per-model :class:`ModelSettings` (never cache, own TTL, concurrency).
        quotas: a :class:`~consortium_lab.gateway.quotas.QuotaManager` applied per
        ``CallRequest.user``.
        prices: a :class:`~consortium_lab.gateway.pricing.PriceTable` for cost per call.
        remote: this gateway fronts a gateway service: no cache, retries, fallbacks or quotas.
        user: the identity quotas and the cache are keyed by when a request names none.
        shared_cache: share cached answers across users (off by default: a shared cache tells
            one user what another asked).
        log_to_llm: also log every finished response to ``llm``'s own log database.
        http_transport: the HTTP client under the openai SDK of OpenAI-compatible models:
            ``httpx`` (the SDK's default) or ``aiohttp`` (the SDK's own aiohttp adapter,
            ``openai.DefaultAioHttpClient``: much less CPU per streamed chunk and per request
            under concurrency; what the gateway service uses). Close its connections with
            :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        cache: Any = _DEFAULT,
        ttl: float | None = 7 * 24 * 3600,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        timeout: float | None = None,
        cooldown: float = 30.0,
        cooldown_after: int = 3,
        groups: Mapping[str, Sequence[str]] | None = None,
        routing: Strategy = "least-busy",
        model_settings: Mapping[str, ModelSettings | Mapping[str, Any]] | None = None,
        quotas: Any = None,
        prices: Any = None,
        metrics: Any = None,
        remote: bool = False,
        user: str = "local",
        shared_cache: bool = False,
        log_to_llm: bool = True,
        http_transport: Literal["httpx", "aiohttp"] = "httpx",
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0 (got {retries})")
        if http_transport not in ("httpx", "aiohttp"):
            raise ValueError(
                f"http_transport must be 'httpx' or 'aiohttp' (got {http_transport!r})"
            )
        if remote:
            cache, retries, fallbacks, quotas = None, 0, None, None
        if cache is _DEFAULT:
            cache = data_dir() / "cache"
        self.cache: ResponseCache | None = (
            cache if cache is None or not isinstance(cache, (str, Path)) else open_cache(cache)
        )
        self.ttl = ttl
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fallbacks = {k: list(v) for k, v in (fallbacks or {}).items()}
        self.timeout = timeout
        self.router = Router(
            groups, strategy=routing, cooldown=cooldown, cooldown_after=cooldown_after
        )
        self.model_settings = {
            k: v if isinstance(v, ModelSettings) else ModelSettings.model_validate(v)
            for k, v in (model_settings or {}).items()
        }
        self.quotas = quotas
        self.prices = prices
        if metrics is None:
            from consortium_lab.gateway.metrics import Metrics

            metrics = Metrics()
        self.metrics = metrics
        self.remote = remote
        self.user = user
        self.shared_cache = shared_cache
        self.log_to_llm = log_to_llm
        self.http_transport = http_transport
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        # Async clients hold a connection pool bound to their event loop: one cache per loop.
        self._clients: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync_clients: dict[tuple[Any, ...], Any] = {}
        self._models: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    @property
    def group_names(self) -> list[str]:
        """Logical model names this gateway serves through groups."""
        return list(self.router.groups)

    def _settings(self, model: str) -> ModelSettings:
        return self.model_settings.get(model) or ModelSettings()

    # -- the call path ----------------------------------------------------------------------
    async def call(self, req: CallRequest, on_delta: DeltaCallback | None = None) -> CallOutcome:
        """Run one call, streaming pieces to ``on_delta``; raise :class:`CallFailed` on failure.

        Cancelling the awaiting task closes the model's stream (its HTTP connection).
        """
        user = req.user or self.user
        limits = self._limits(req)
        if self.quotas is not None:
            from consortium_lab.gateway.quotas import QuotaExceeded

            try:
                # A user without request or token limits cannot be refused: admitted at once,
                # the request counted in the background (QuotaManager.try_check).
                try_check = getattr(self.quotas, "try_check", None)
                admitted, cap = (
                    try_check(user, limits.max_output_tokens) if try_check else (False, None)
                )
                if not admitted:
                    # SQLite or Redis behind the quota may wait for a lock: not on the loop.
                    cap = await asyncio.to_thread(self.quotas.check, user, limits.max_output_tokens)
            except QuotaExceeded as exc:
                self.metrics.quota_rejection(exc.window)
                raise CallFailed("quota", str(exc), retry_after=exc.retry_after) from exc
            if cap is not None and cap != limits.max_output_tokens:
                limits = limits.model_copy(update={"max_output_tokens": cap})
        key = None
        if self.cache is not None and self._settings(req.model).cache and req.cache != "bypass":
            key = cache_key(
                model=req.model,
                instance=req.instance,
                stage=req.stage,
                prompt=req.prompt,
                system=req.system,
                history=req.history,
                options=req.options,
                user=None if self.shared_cache else user,
            )
            if req.cache == "use":
                hit = await asyncio.to_thread(self.cache.get, key)
                if hit is not None:
                    self.metrics.cache_hit(req.model)
                    if on_delta is not None:
                        on_delta(hit.text, "text")
                    return CallOutcome(
                        text=hit.text,
                        reasoning=hit.reasoning,
                        usage=Usage(input_tokens=hit.input_tokens, output_tokens=hit.output_tokens),
                        latency_ms=0.0,
                        first_token_ms=0.0,
                        served_by=hit.served_by,
                        cached=True,
                        response_id=hit.response_id,
                        cost=0.0,
                    )
            self.metrics.cache_miss(req.model)
        outcome = await self._with_fallbacks(req, limits, on_delta)
        if self.quotas is not None:
            tokens = (outcome.usage.input_tokens, outcome.usage.output_tokens)
            charge_later = getattr(self.quotas, "charge_later", None)
            if charge_later is not None:
                # Queued and written in the background; the manager's next check reads it.
                charge_later(user, *tokens)
            else:
                await asyncio.to_thread(self.quotas.charge, user, *tokens)
        if key is not None and self.cache is not None:
            ttl = self._settings(req.model).ttl or self.ttl
            entry = CachedAnswer(
                text=outcome.text,
                reasoning=outcome.reasoning,
                input_tokens=outcome.usage.input_tokens,
                output_tokens=outcome.usage.output_tokens,
                served_by=outcome.served_by,
                response_id=outcome.response_id,
            )
            await asyncio.to_thread(self.cache.set, key, entry, ttl)
        return outcome

    def _limits(self, req: CallRequest) -> Limits:
        limits = req.limits
        if self.timeout is not None and (
            limits.total_timeout is None or limits.total_timeout > self.timeout
        ):
            limits = limits.model_copy(update={"total_timeout": self.timeout})
        return limits

    async def _with_fallbacks(
        self, req: CallRequest, limits: Limits, on_delta: DeltaCallback | None
    ) -> CallOutcome:
        """The model, then each fallback; within each, a group's deployments in route order."""
        failures: list[CallFailed] = []
        attempts = 0
        streamed = False
        chain = [req.model, *self.fallbacks.get(req.model, [])]
        for position, logical in enumerate(chain):
            if position > 0:
                self.metrics.fallback(req.model, logical)
            for deployment in self.router.deployments(logical):
                resting = self.router.resting_for(deployment)
                if resting > 0:
                    failures.append(
                        CallFailed(
                            "cooldown",
                            f"{deployment}: resting for {resting:.0f} s after repeated failures",
                            served_by=deployment,
                        )
                    )
                    continue
                if streamed and on_delta is not None:
                    on_delta("", "restart")
                try:
                    outcome = await self._with_retries(deployment, req, limits, on_delta)
                except CallFailed as exc:
                    attempts += exc.attempts
                    streamed = streamed or exc.streamed
                    failures.append(exc)
                    if exc.kind == "cut_off":
                        # A runaway answer is reported, not retried elsewhere at full cost.
                        raise self._final(failures, attempts) from None
                    continue
                outcome.attempts += attempts
                return outcome
        raise self._final(failures, attempts)

    @staticmethod
    def _final(failures: list[CallFailed], attempts: int) -> CallFailed:
        last = failures[-1]
        if len(failures) > 1:
            message = "; ".join(f"{f.served_by}: {f.message}" for f in failures)
        else:
            message = last.message
        return CallFailed(
            last.kind,
            message,
            partial_text=last.partial_text,
            latency_ms=last.latency_ms,
            served_by=last.served_by,
            attempts=max(attempts, 1),
            retry_after=last.retry_after,
        )

    async def _with_retries(
        self, model: str, req: CallRequest, limits: Limits, on_delta: DeltaCallback | None
    ) -> CallOutcome:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        streamed = False

        def restartable(chunk: str, channel: str) -> None:
            nonlocal streamed
            streamed = True
            if on_delta is not None:
                on_delta(chunk, channel)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, CallFailed) and e.retryable),
            reraise=True,
        )
        self.router.started(model)
        ok = False
        latency: float | None = None
        attempt_number = 0
        try:
            async for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    if attempt_number > 1:
                        self.metrics.retry(model)
                        if streamed and on_delta is not None:
                            on_delta("", "restart")
                    outcome = await self._limited(model, req, limits, restartable)
                    outcome.attempts = attempt_number
                    ok, latency = True, outcome.latency_ms
                    return outcome
        except CallFailed as exc:
            exc.attempts = attempt_number
            exc.streamed = streamed
            self.metrics.failure(model, exc.kind)
            duration = exc.latency_ms / 1000 if exc.latency_ms is not None else None
            self.metrics.request(model, "error", duration)
            raise
        finally:
            self.router.finished(model, ok=ok, latency_ms=latency)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    def _wait(self, state: Any) -> float:
        """Exponential backoff with full jitter, or the provider's ``Retry-After`` if longer."""
        import random

        exc = state.outcome.exception() if state.outcome else None
        base = min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1))
        wait = random.uniform(0, base)
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            wait = max(wait, min(asked, self.max_backoff))
        return wait

    async def _limited(
        self, model: str, req: CallRequest, limits: Limits, on_delta: DeltaCallback
    ) -> CallOutcome:
        concurrency = self._settings(model).concurrency
        if concurrency is None:
            return await self._stream_once(model, req, limits, on_delta)
        semaphore = self._semaphores.setdefault(model, asyncio.Semaphore(concurrency))
        async with semaphore:
            return await self._stream_once(model, req, limits, on_delta)

    async def _stream_once(
        self, model: str, req: CallRequest, limits: Limits, on_delta: DeltaCallback
    ) -> CallOutcome:
        """One streaming attempt against one model, within its limits."""
        start = time.monotonic()
        text: list[str] = []
        reasoning: list[str] = []
        first_token_ms: float | None = None
        chars = 0

        def failed(kind: str, message: str, **extra: Any) -> CallFailed:
            return CallFailed(
                kind,
                message,
                partial_text="".join(text),
                latency_ms=(time.monotonic() - start) * 1000,
                served_by=model,
                **extra,
            )

        # Deadlines on the loop's clock: the whole call, and the first token.
        total_at = None if limits.total_timeout is None else start + limits.total_timeout
        first_at = (
            None if limits.first_token_timeout is None else start + limits.first_token_timeout
        )
        max_chars = _max_chars(limits.max_output_tokens)
        try:
            stream, response = self._open(model, req)
        except Exception as exc:
            raise failed(classify(exc), error_message(exc)) from exc
        cut = False
        try:
            # One timeout for the whole stream, moved once when the first token arrives (not
            # one per chunk: that was a timer armed and cancelled per chunk). It keeps the
            # reads in this task: the HTTP stream's cancel scopes must be entered and left by
            # the same task.
            deadline = _earliest(total_at, first_at)
            scope = asyncio.timeout_at(None if deadline is None else _loop_time(deadline))
            try:
                async with scope:
                    async for kind, chunk in stream:
                        if not chunk:
                            continue
                        if first_token_ms is None:
                            first_token_ms = (time.monotonic() - start) * 1000
                            if first_at is not None:
                                scope.reschedule(None if total_at is None else _loop_time(total_at))
                        channel = "reasoning" if kind == "reasoning" else "text"
                        (reasoning if channel == "reasoning" else text).append(chunk)
                        chars += len(chunk)
                        on_delta(chunk, channel)
                        if max_chars is not None and chars > max_chars:
                            cut = True
                            break
            except TimeoutError:
                if not scope.expired():
                    raise  # not ours: classified below like any other error
                elapsed = time.monotonic() - start
                total_hit = (
                    limits.total_timeout is not None and elapsed >= limits.total_timeout - 1e-3
                )
                if total_hit:
                    # A retry would repeat the whole wait: reported like a runaway answer.
                    raise failed(
                        "cut_off" if first_token_ms is not None else "timeout",
                        f"{model}: answer not finished within {limits.total_timeout:g} s",
                    ) from None
                raise failed(
                    "timeout",
                    f"{model}: no first token within {limits.first_token_timeout:g} s",
                ) from None
            if cut:
                await _abort(stream)
                raise failed(
                    "cut_off",
                    f"{model}: output passed the limit of {limits.max_output_tokens} tokens"
                    " and was cut off",
                )
        except CallFailed:
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise failed(
                classify(exc), error_message(exc), retry_after=retry_after_seconds(exc)
            ) from exc
        finally:
            await stream.aclose()
        latency_ms = (time.monotonic() - start) * 1000
        full = "".join(text)
        if not full.strip():
            raise failed("empty", f"{model}: returned an empty answer")
        usage = Usage(
            input_tokens=getattr(response, "input_tokens", None),
            output_tokens=getattr(response, "output_tokens", None),
        )
        cost = (
            self.prices.cost(model, usage.input_tokens, usage.output_tokens)
            if self.prices is not None
            else None
        )
        self.metrics.request(model, "ok", latency_ms / 1000, (first_token_ms or 0) / 1000)
        self.metrics.tokens(model, usage.input_tokens or 0, usage.output_tokens or 0)
        if cost is not None:
            self.metrics.cost(model, cost, self.prices.currency)
        response_id = await self._log(response) if self.log_to_llm else None
        return CallOutcome(
            text=full,
            reasoning="".join(reasoning),
            usage=usage,
            latency_ms=latency_ms,
            first_token_ms=first_token_ms,
            served_by=model,
            response_id=response_id,
            cost=cost,
        )

    # -- reaching a model ---------------------------------------------------------------------
    def _resolve(self, model_id: str) -> tuple[Any, Any]:
        """The ``llm`` model objects (async or None, sync or None) for an id, looked up once.

        ``llm.get_async_model`` asks every plugin to register all its models again (the OpenAI
        plugin re-reads its YAML file): about 4 ms of CPU per call here, a quarter of the
        engine's CPU under load. Models are plain descriptions, so one lookup per gateway is
        enough; a model added to ``llm`` later is found on its first use.
        """
        with self._lock:
            found = self._models.get(model_id)
        if found is None:
            try:
                found = (self._share_client(llm.get_async_model(model_id)), None)
            except llm.UnknownModelError:
                found = (None, self._share_client(llm.get_model(model_id)))
            with self._lock:
                self._models[model_id] = found
        return found

    def _open(
        self, model_id: str, req: CallRequest
    ) -> tuple[AsyncGenerator[tuple[str, str], None], Any]:
        async_model, model = self._resolve(model_id)
        if async_model is not None:
            response = async_model.prompt(
                req.prompt, system=req.system, messages=_history(req), stream=True, **req.options
            )
            return _async_events(response), response
        response = model.prompt(
            req.prompt, system=req.system, messages=_history(req), stream=True, **req.options
        )
        return _thread_events(response), response

    def _share_client(self, model: Any) -> Any:
        """Give an OpenAI-compatible ``llm`` model one shared client per (endpoint, key).

        ``llm``'s OpenAI plugin builds a new client for every call; each loads the system's CA
        bundle (about 40 ms of CPU here) and opens fresh connections, and it also retries by
        itself (twice, invisibly). We keep the plugin and its request code and only hand it a
        client built once, with its own retries off, so every retry is the gateway's: counted
        once and visible in the metrics. With ``http_transport="aiohttp"`` that client sends
        through the openai SDK's aiohttp adapter instead of httpx: httpcore's pool checks every
        idle connection's socket on each request and each response end (quadratic under
        hundreds of concurrent streams) and keeps only 100 idle connections, so every burst
        reconnects. Models of other plugins are left untouched.
        """
        build = getattr(model, "get_client", None)
        if build is None or not hasattr(model, "api_base"):
            return model

        def get_client(key: str | None, *, async_: bool = False) -> Any:
            secret = model.get_key(key) if getattr(model, "needs_key", None) else None
            ident = (
                type(model).__name__,
                model.api_base,
                secret,
                getattr(model, "api_type", None),
                getattr(model, "api_version", None),
                getattr(model, "api_engine", None),
                tuple(sorted((getattr(model, "headers", None) or {}).items())),
            )
            with self._lock:
                cache = (
                    self._clients.setdefault(asyncio.get_running_loop(), {})
                    if async_
                    else self._sync_clients
                )
                if ident not in cache:
                    client = build(key, async_=async_)
                    with_options = getattr(client, "with_options", None)
                    options: dict[str, Any] = {"max_retries": 0}
                    if async_ and self.http_transport == "aiohttp":
                        http_client = _aiohttp_client(client)
                        if http_client is not None:
                            options["http_client"] = http_client
                    cache[ident] = with_options(**options) if with_options else client
                return cache[ident]

        model.get_client = get_client
        return model

    async def aclose(self) -> None:
        """Close the shared async clients of the running loop (their connection pools)."""
        with self._lock:
            clients = list(self._clients.pop(asyncio.get_running_loop(), {}).values())
        for client in clients:
            close = getattr(client, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def _log(self, response: Any) -> str | None:
        from consortium_lab.gateway.llm_logs import log_to_llm

        return await asyncio.to_thread(log_to_llm, response)

    def close(self) -> None:
        """Close the cache backend."""
        if self.cache is not None:
            self.cache.close()


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _loop_time(monotonic_at: float) -> float:
    """A ``time.monotonic()`` instant on the running loop's clock (``asyncio.timeout_at``)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_at - time.monotonic())


def _aiohttp_client(client: Any) -> Any:
    """The openai SDK's own aiohttp HTTP client (``openai.DefaultAioHttpClient``), or ``None``
    where it is not available or the plugin gave the client a special one (llm's
    ``LLM_OPENAI_SHOW_RESPONSES`` logging client)."""
    import os

    if os.environ.get("LLM_OPENAI_SHOW_RESPONSES"):
        return None
    try:
        import openai

        made = openai.DefaultAioHttpClient(
            timeout=getattr(client, "timeout", openai.DEFAULT_TIMEOUT),
            limits=openai.DEFAULT_CONNECTION_LIMITS,
        )
    except Exception:  # no aiohttp, or an SDK without the adapter
        return None
    return made


async def _abort(stream: AsyncIterator[tuple[str, str]]) -> None:
    """Stop a stream we no longer want, closing its HTTP response.

    ``aclose()`` from outside does not reach the response: the provider client's own iterator
    is merely dropped and waits for garbage collection. A read cancelled *inside* the stream
    unwinds every ``finally`` down to the socket, as a cancelled run does. The loop is bounded:
    a read that completes at once (data already buffered) is simply discarded.
    """
    for _ in range(10_000):
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, StopAsyncIteration, Exception):
            return


async def _async_events(response: llm.AsyncResponse) -> AsyncGenerator[tuple[str, str], None]:
    events = response.astream_events()
    try:
        async for event in events:
            if event.type in ("text", "reasoning"):
                yield event.type, event.chunk
    finally:
        await events.aclose()


async def _thread_events(response: llm.Response) -> AsyncGenerator[tuple[str, str], None]:
    """Stream a sync-only model from a worker thread. On cancellation the thread is abandoned at
    its next chunk (a sync client cannot be interrupted mid-read)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def worker() -> None:
        try:
            for event in response.stream_events():
                if stop.is_set():
                    return
                if event.type in ("text", "reasoning"):
                    put((event.type, event.chunk))
            put(("done", None))
        except BaseException as exc:  # delivered to the awaiting side
            put(("error", exc))

    thread = threading.Thread(
        target=worker, name=f"llm-sync-{response.model.model_id}", daemon=True
    )
    thread.start()
    try:
        while True:
            kind, item = await queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield kind, item
    finally:
        stop.set()
