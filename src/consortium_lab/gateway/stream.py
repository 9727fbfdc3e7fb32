"""One streaming attempt at one model: opening the ``llm`` stream and reading it within the
call's limits (time to first token, total time, output size), however the model streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import llm

from consortium_lab.config.catalog import LlmModel
from consortium_lab.config.consortium import Limits
from consortium_lab.config.options import max_tokens_option
from consortium_lab.gateway.calls import CallRequest, DeltaCallback
from consortium_lab.gateway.failures import CallFailed, classify, error_message, retry_after_seconds
from consortium_lab.gateway.sync_calls import call_slot, thread_events

__all__ = ["Streamed", "open_stream", "stream_once"]


@dataclass(frozen=True)
class Streamed:
    """What one attempt streamed, and the ``llm`` response that reports its usage."""

    text: str
    reasoning: str
    latency_ms: float
    first_token_ms: float | None
    response: Any
    truncated: bool = False
    """The model stopped at its own max-tokens option (``finish_reason`` ``length``)."""


def open_stream(
    found: LlmModel,
    req: CallRequest,
    limits: Limits | None = None,
    *,
    parallel_sync: bool = False,
) -> tuple[AsyncGenerator[tuple[str, str], None], Any]:
    """Start ``req`` on the model: its ``(channel, chunk)`` events and the ``llm`` response.

    ``limits.max_output_tokens`` becomes the model's own max-tokens option when its
    ``Options`` have one (see :data:`~consortium_lab.config.options.MAX_TOKENS_OPTIONS`) and
    the request does not set it. A sync-only model runs one call at a time unless it is
    thread-safe or ``parallel_sync`` allows overlapping calls.
    """
    options = _with_max_tokens(found, req.options, limits)
    if found.async_model is not None:
        response = found.async_model.prompt(
            req.prompt, system=req.system, messages=_history(req), stream=True, **options
        )
        return _async_events(response), response
    assert found.model is not None  # LlmModel holds one of the two
    sync_response = found.model.prompt(
        req.prompt, system=req.system, messages=_history(req), stream=True, **options
    )
    slot = call_slot(found.model, parallel=parallel_sync)
    return thread_events(sync_response, slot), sync_response


def _with_max_tokens(
    found: LlmModel, options: dict[str, Any], limits: Limits | None
) -> dict[str, Any]:
    if limits is None or limits.max_output_tokens is None:
        return options
    name = max_tokens_option(found.options_class)
    if name is None or name in options:
        return options
    return {**options, name: limits.max_output_tokens}


async def stream_once(
    model: str,
    found: Callable[[], LlmModel],
    req: CallRequest,
    limits: Limits,
    on_delta: DeltaCallback,
    *,
    parallel_sync: bool = False,
) -> Streamed:
    """One streaming attempt against ``model`` (looked up by ``found``), within ``limits``.

    Raises :class:`CallFailed` for every failure, the model's look-up included; the pieces
    go to ``on_delta`` as they arrive. A sync-only model's call that waits for the model
    sends ``on_delta("", "queued")`` and, once it runs, ``on_delta("", "started")``; its
    limits count from then.
    """
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
    first_at = None if limits.first_token_timeout is None else start + limits.first_token_timeout
    max_chars = _max_chars(limits.max_output_tokens)
    try:
        stream, response = open_stream(found(), req, limits, parallel_sync=parallel_sync)
    except Exception as exc:
        raise failed(classify(exc), error_message(exc)) from exc
    cut = False
    queued = False
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
                    if kind == "queued":
                        queued = True
                        scope.reschedule(None)  # waiting for the model is not its time
                        on_delta("", "queued")
                        continue
                    if kind == "started":
                        if queued:  # its limits start now
                            start = time.monotonic()
                            total_at = _after(start, limits.total_timeout)
                            first_at = _after(start, limits.first_token_timeout)
                            deadline = _earliest(total_at, first_at)
                            scope.reschedule(None if deadline is None else _loop_time(deadline))
                            on_delta("", "started")
                        continue
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
            total_hit = limits.total_timeout is not None and elapsed >= limits.total_timeout - 1e-3
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
    return Streamed(
        text=full,
        reasoning="".join(reasoning),
        latency_ms=latency_ms,
        first_token_ms=first_token_ms,
        response=response,
        truncated=_stopped_at_length(response),
    )


def _stopped_at_length(response: Any) -> bool:
    """Whether the model says it stopped at its max-tokens option (OpenAI's ``finish_reason``
    ``length``, as ``llm`` keeps it in ``response_json``)."""
    data = getattr(response, "response_json", None)
    if not isinstance(data, dict):
        return False
    reason = data.get("finish_reason") or data.get("stop_reason") or data.get("done_reason")
    choices = data.get("choices")
    if reason is None and isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
    return reason in ("length", "max_tokens")


def _after(start: float, seconds: float | None) -> float | None:
    return None if seconds is None else start + seconds


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


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _loop_time(monotonic_at: float) -> float:
    """A ``time.monotonic()`` instant on the running loop's clock (``asyncio.timeout_at``)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_at - time.monotonic())


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
