"""The gateway: the one place where a model is called.

Every call of the engine — member answers, peer reviews, the arbiter — goes through
:meth:`Gateway.call`. It streams through ``llm``'s async API (a sync-only model runs in a worker
thread and still streams), enforces the per-call :class:`~consortium_lab.config.Limits`
(time to first token, total time, output tokens), turns every failure into a
:class:`CallFailed` that keeps the model's own message, and logs finished responses to ``llm``'s
own log database.

This issue's gateway is the call path only; caching, retries, fallbacks, quotas and metrics are
layered on this same method (see ``docs/architecture.md``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import llm

from .config import Limits
from .events import Stage, Usage

logger = logging.getLogger(__name__)

DeltaCallback = Callable[[str, str], None]
"""Called with ``(text, channel)`` for each streamed piece; channel is 'text' or 'reasoning'."""

_CONTEXT_WINDOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long", re.I
)


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


class CallFailed(Exception):
    """A call that produced no usable answer. ``kind`` is one of: error, timeout, empty,
    context_window, cut_off."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        partial_text: str = "",
        latency_ms: float | None = None,
        served_by: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.partial_text = partial_text
        self.latency_ms = latency_ms
        self.served_by = served_by
        self.attempts = attempts


def classify(exc: BaseException) -> str:
    """The failure kind of an exception raised by a model."""
    if isinstance(exc, TimeoutError) or type(exc).__name__ in {"APITimeoutError", "ReadTimeout"}:
        return "timeout"
    return "context_window" if _CONTEXT_WINDOW.search(str(exc)) else "error"


def error_message(exc: BaseException) -> str:
    """The model's own message, prefixed with the exception type when that adds information."""
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


class Gateway:
    """Calls models for the engine.

    Args:
        log_to_llm: also log every finished response to ``llm``'s own log database (so
            ``llm logs`` lists it), unless ``llm logs off`` is in force.
    """

    def __init__(self, *, log_to_llm: bool = True) -> None:
        self.log_to_llm = log_to_llm
        # Async clients hold a connection pool bound to their event loop: one cache per loop.
        self._clients: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync_clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def _share_client(self, model: Any) -> Any:
        """Give an OpenAI-compatible ``llm`` model one shared client per (endpoint, key).

        ``llm``'s OpenAI plugin builds a new client for every call, and each one loads the
        system's CA bundle (about 40 ms of CPU here) and opens fresh connections: under load
        that alone is the engine's largest cost. We keep the plugin and its request code, and
        only hand it a client it has used before. Models of other plugins are left untouched.
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
                    cache[ident] = build(key, async_=async_)
                return cache[ident]

        model.get_client = get_client
        return model

    async def call(self, req: CallRequest, on_delta: DeltaCallback | None = None) -> CallOutcome:
        """Run one call, streaming pieces to ``on_delta``; raise :class:`CallFailed` on failure.

        Cancelling the awaiting task closes the model's stream (its HTTP connection).
        """
        start = time.monotonic()
        text: list[str] = []
        reasoning: list[str] = []
        first_token_ms: float | None = None
        chars = 0
        limits = req.limits
        stream, response = self._open(req)
        try:
            while True:
                elapsed = time.monotonic() - start
                waits = []
                if limits.total_timeout is not None:
                    waits.append(limits.total_timeout - elapsed)
                if first_token_ms is None and limits.first_token_timeout is not None:
                    waits.append(limits.first_token_timeout - elapsed)
                timeout = max(min(waits), 0.0) if waits else None
                try:
                    # asyncio.timeout keeps the read in this task: the HTTP stream's cancel
                    # scopes must be entered and left by the same task.
                    async with asyncio.timeout(timeout):
                        kind, chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    what = "first token" if first_token_ms is None else "the whole answer"
                    limit = (
                        limits.first_token_timeout
                        if first_token_ms is None
                        else limits.total_timeout
                    )
                    raise CallFailed(
                        "timeout",
                        f"{req.model}: no {what} within {limit:g} s",
                        partial_text="".join(text),
                        latency_ms=(time.monotonic() - start) * 1000,
                        served_by=req.model,
                    ) from None
                if not chunk:
                    continue
                if first_token_ms is None:
                    first_token_ms = (time.monotonic() - start) * 1000
                (reasoning if kind == "reasoning" else text).append(chunk)
                chars += len(chunk)
                if on_delta is not None:
                    on_delta(chunk, "reasoning" if kind == "reasoning" else "text")
                if (
                    limits.max_output_tokens is not None
                    and _estimate_tokens(chars) > limits.max_output_tokens
                ):
                    await _abort(stream)
                    raise CallFailed(
                        "cut_off",
                        f"{req.model}: output passed the limit of {limits.max_output_tokens} tokens"
                        " and was cut off",
                        partial_text="".join(text),
                        latency_ms=(time.monotonic() - start) * 1000,
                        served_by=req.model,
                    )
        except CallFailed:
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise CallFailed(
                classify(exc),
                error_message(exc),
                partial_text="".join(text),
                latency_ms=(time.monotonic() - start) * 1000,
                served_by=req.model,
            ) from exc
        finally:
            await stream.aclose()
        latency_ms = (time.monotonic() - start) * 1000
        full = "".join(text)
        if not full.strip():
            raise CallFailed(
                "empty",
                f"{req.model}: returned an empty answer",
                latency_ms=latency_ms,
                served_by=req.model,
            )
        usage = Usage(
            input_tokens=getattr(response, "input_tokens", None),
            output_tokens=getattr(response, "output_tokens", None),
        )
        response_id = await self._log(response) if self.log_to_llm else None
        return CallOutcome(
            text=full,
            reasoning="".join(reasoning),
            usage=usage,
            latency_ms=latency_ms,
            first_token_ms=first_token_ms,
            served_by=getattr(getattr(response, "model", None), "model_id", req.model),
            response_id=response_id,
        )

    # -- streaming a model -----------------------------------------------------------------
    def _open(self, req: CallRequest) -> tuple[AsyncGenerator[tuple[str, str], None], Any]:
        try:
            async_model = llm.get_async_model(req.model)
        except llm.UnknownModelError:
            async_model = None
        if async_model is not None:
            response = self._share_client(async_model).prompt(
                req.prompt, system=req.system, messages=_history(req), stream=True, **req.options
            )
            return _async_events(response), response
        model = self._share_client(llm.get_model(req.model))
        response = model.prompt(
            req.prompt, system=req.system, messages=_history(req), stream=True, **req.options
        )
        return _thread_events(response), response

    async def _log(self, response: Any) -> str | None:
        from .llm_logs import log_to_llm

        return await asyncio.to_thread(log_to_llm, response)


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
