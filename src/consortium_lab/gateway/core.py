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
import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from consortium_lab.config.catalog import ModelLookups
from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.cache import CachedAnswer, ResponseCache, cache_key, open_cache
from consortium_lab.gateway.calls import (
    CallOutcome,
    CallRequest,
    DeltaCallback,
    ModelSettings,
)
from consortium_lab.gateway.clients import HttpTransport, SharedClients
from consortium_lab.gateway.failures import (
    CallFailed,
    never_connected,
)
from consortium_lab.gateway.routing import Router, Strategy
from consortium_lab.gateway.stream import stream_once
from consortium_lab.gateway.types import Usage
from consortium_lab.paths import data_dir

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

_DEFAULT = object()


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
            A call whose connection the service refuses (it is restarting) is sent again for
            up to ``reconnect`` seconds: it never reached the service, so nothing is done twice.
        user: the identity quotas and the cache are keyed by when a request names none.
        shared_cache: share cached answers across users (off by default: a shared cache tells
            one user what another asked).
        log_to_llm: also log every finished response to ``llm``'s own log database.
        http_transport: the HTTP client under the openai SDK of OpenAI-compatible models:
            ``httpx`` (the SDK's default) or ``aiohttp`` (the SDK's own aiohttp adapter,
            ``openai.DefaultAioHttpClient``: much less CPU per streamed chunk and per request
            under concurrency; what the gateway service uses). Close its connections with
            :meth:`aclose`.
        lean_streaming: stream plain prompts to ``llm``'s OpenAI-compatible chat models through
            the lean transport (one shared aiohttp session, orjson; no SDK chunk objects), with
            ``llm``'s own path for everything it does not handle. On by default; ``False`` sends
            every call through the openai SDK.
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
        http_transport: HttpTransport = "httpx",
        lean_streaming: bool = True,
        reconnect: float = 60.0,
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
        self.reconnect = reconnect
        self.user = user
        self.shared_cache = shared_cache
        self.log_to_llm = log_to_llm
        self.http_transport = http_transport
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self.lean_streaming = lean_streaming
        self.clients = SharedClients(http_transport, lean=lean_streaming)
        # Models keep the clients handed to them: one set of model objects per gateway.
        self._models = ModelLookups(prepare=self.clients.share)

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
        req = self._sampled(req)
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
                sample=req.sample,
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
        if key is not None and self.cache is not None and not outcome.truncated:
            ttl = self._settings(req.model).ttl or self.ttl
            entry = CachedAnswer(
                text=outcome.text,
                reasoning=outcome.reasoning,
                input_tokens=outcome.usage.input_tokens,
                output_tokens=outcome.usage.output_tokens,
                served_by=outcome.served_by,
                response_id=outcome.response_id,
            )
            owner = None if self.shared_cache else user  # indexed per user, for deletion
            await asyncio.to_thread(self.cache.set, key, entry, ttl, owner)
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
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay

        streamed = False

        def worth_retrying(exc: BaseException) -> bool:
            if not isinstance(exc, CallFailed):
                return False
            if self.remote:
                # A gateway service killed mid-stream: only the streams it cut fail; a call
                # refused while it restarts waits for it.
                return not streamed and exc.kind == "connection" and never_connected(exc)
            return exc.retryable

        def restartable(chunk: str, channel: str) -> None:
            nonlocal streamed
            # "queued"/"started" say when a sync-only model's call ran, not what it wrote.
            streamed = streamed or channel in ("text", "reasoning")
            if on_delta is not None:
                on_delta(chunk, channel)

        retrying = AsyncRetrying(
            stop=stop_after_delay(self.reconnect)
            if self.remote
            else stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(worth_retrying),
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
            # Cut off by our limits, the model did answer (its text is kept): not a failure
            # that should rest it. Three rambling members must not lock out their own arbiter.
            ok = exc.kind == "cut_off" and bool(exc.partial_text.strip())
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
        """One streaming attempt against one model, within its limits; then its usage, cost,
        metrics and ``llm`` log entry."""
        done = await stream_once(
            model,
            lambda: self._models.get(model),
            req,
            limits,
            on_delta,
            parallel_sync=self._settings(model).parallel_sync,
        )
        response = done.response
        usage = Usage(
            input_tokens=getattr(response, "input_tokens", None),
            output_tokens=getattr(response, "output_tokens", None),
        )
        cost = (
            self.prices.cost(model, usage.input_tokens, usage.output_tokens)
            if self.prices is not None
            else None
        )
        self.metrics.request(model, "ok", done.latency_ms / 1000, (done.first_token_ms or 0) / 1000)
        self.metrics.tokens(model, usage.input_tokens or 0, usage.output_tokens or 0)
        if cost is not None:
            self.metrics.cost(model, cost, self.prices.currency)
        response_id = await self._log(response) if self.log_to_llm else None
        return CallOutcome(
            text=done.text,
            reasoning=done.reasoning,
            usage=usage,
            latency_ms=done.latency_ms,
            first_token_ms=done.first_token_ms,
            served_by=model,
            response_id=response_id,
            cost=cost,
            truncated=done.truncated,
        )

    def _sampled(self, req: CallRequest) -> CallRequest:
        """Instance N > 1 of a model that takes a ``seed`` option gets ``seed=N`` unless one is
        set. Without it, instances sent through a gateway service would be identical requests
        there (the service sees no instance), sharing one cached answer instead of being
        distinct samples; a fixed seed per instance keeps each instance's own cache entry.
        A named ``sample`` gets a seed of its own the same way (from its name and instance)."""
        if (req.instance <= 1 and req.sample is None) or "seed" in req.options:
            return req
        try:
            options_class = self._models.get(req.model).options_class
        except Exception:  # a group name or an unknown model: routing reports it
            return req
        if "seed" not in (getattr(options_class, "model_fields", None) or {}):
            return req
        seed = req.instance
        if req.sample is not None:
            digest = hashlib.sha256(f"{req.sample}#{req.instance}".encode()).digest()
            seed = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
        return dataclasses.replace(req, options={**req.options, "seed": seed})

    async def aclose(self) -> None:
        """Close the shared async clients of the running loop (their connection pools)."""
        await self.clients.aclose()

    async def _log(self, response: Any) -> str | None:
        # Queued: a writer thread logs whatever queued in its batch window in one transaction.
        from consortium_lab.gateway.llm_log_writer import default_writer

        return default_writer().submit(response)

    def close(self) -> None:
        """Close the cache backend."""
        if self.cache is not None:
            self.cache.close()
