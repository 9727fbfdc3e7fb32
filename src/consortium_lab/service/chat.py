"""``POST /v1/chat/completions``: a chat request as one gateway call, answered whole or
streamed as OpenAI's SSE chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from consortium_lab.gateway.calls import CallOutcome, CallRequest
from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.failures import CallFailed
from consortium_lab.service.auth import Gatekeeper
from consortium_lab.service.discovery import ModelDirectory
from consortium_lab.service.errors import ApiError, failure_error, internal_error, validation_error
from consortium_lab.service.metrics import ServiceMetrics
from consortium_lab.service.policies import RuleBook
from consortium_lab.service.protocol import (
    ChatRequest,
    ChunkFrames,
    consortium_extra,
    map_options,
    messages_to_call,
    read_json,
    sse,
    usage_body,
)
from consortium_lab.service.settings import ServiceSettings
from consortium_lab.service.usage import UsageRecorder

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["ChatCompletions"]

logger = logging.getLogger(__name__)


class ChatCompletions:
    """The chat-completions endpoint: checks the caller, the model and the request, calls the
    gateway, and answers in OpenAI's shape."""

    def __init__(
        self,
        settings: ServiceSettings,
        gateway: Gateway,
        gatekeeper: Gatekeeper,
        directory: ModelDirectory,
        rulebook: RuleBook,
        recorder: UsageRecorder,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.gatekeeper = gatekeeper
        self.directory = directory
        self.rulebook = rulebook
        self.recorder = recorder
        self.metrics = metrics

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``: one JSON answer, or SSE chunks when ``stream``."""
        received = time.time()
        identity = await self.gatekeeper.identify(request)
        body = await read_json(request)
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
        model, offered = await self.directory.resolve(chat.model)
        rules = await self.rulebook.refresh()
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

    async def _plain(self, name: str, call: CallRequest, received: float) -> web.Response:
        from aiohttp import web

        try:
            outcome = await self.gateway.call(call)
        except CallFailed as exc:
            await self.recorder.record(call, received, None, exc, stream=False)
            if exc.kind != "cut_off" or not exc.partial_text:
                raise failure_error(exc) from None
            text, finish, done = exc.partial_text, "length", None
        else:
            await self.recorder.record(call, received, outcome, None, stream=False)
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
            "usage": usage_body(done),
            "consortium": consortium_extra(done),
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
        :class:`ChunkFrames`); the pieces that arrived since the last write go out in one
        write, and the end of the stream (finish chunk, usage chunk, ``[DONE]`` and the end of
        the HTTP body) in one more. A stream that ends whole is stored in the ledger after
        that last write, off the client's wait; one that fails is stored before its error.
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
        frames = ChunkFrames("chatcmpl-" + uuid.uuid4().hex[:24], int(received), name)
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
            await send(before + sse(error.body()))

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
                            await self.recorder.record(
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
            text_sent = "".join(sent)
            complete = (failure is None or (failure.kind == "cut_off" and bool(text_sent))) and (
                outcome is None or outcome.text == text_sent
            )
            if not complete:
                await self.recorder.record(call, received, outcome, failure, stream=True)
                recorded = True
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
                    "usage": usage_body(outcome),
                    "consortium": consortium_extra(outcome),
                }
                end.append(sse(usage))
            end.append(b"data: [DONE]\n\n")
            try:
                await send(b"".join(end), eof=True)
            finally:
                # Stored once the client has the whole answer: the ledger's writer thread
                # and its transaction are off the stream's path (a client that left during
                # this last write had the answer all the same). The quota was charged
                # already, by the gateway.
                await self.recorder.record(call, received, outcome, failure, stream=True)
                recorded = True
            assert response is not None
            return response
        except ConnectionError:
            # The client went away: stop the model's stream too.
            logger.info("client left a stream of %s", call.model)
            if not recorded:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, CallFailed):
                    await task
                await self.recorder.record(
                    call, received, None, None, stream=True, kind="cancelled"
                )
            return response if response is not None else web.Response(status=499)
        except ApiError:
            raise
        except Exception:
            if response is None:
                raise
            ref = uuid.uuid4().hex[:12]
            logger.exception("internal error (ref %s) in a stream", ref)
            with contextlib.suppress(Exception):
                await fail(internal_error(ref))
            return response
        finally:
            if not task.done():
                task.cancel()
            if response is not None:
                self.metrics.active_streams.dec()
