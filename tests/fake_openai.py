"""A loopback OpenAI-compatible chat server: the only test double for model providers.

Tests reach it through llm's own OpenAI plugin (``extra-openai-models.yaml`` with ``api_base``),
so the real llm client, the real ``openai`` SDK, its retries and its SSE parser are exercised.

The server runs its own asyncio event loop in a daemon thread, so sync and async tests can both
use it. It binds ``127.0.0.1`` on a free port, stops on ``stop()`` / context-manager exit, and in
any case shuts itself down after ``max_lifetime`` seconds (default 10 minutes).

Endpoints::

    POST /v1/chat/completions   stream (SSE chunks, usage chunk when
                                stream_options.include_usage, ``data: [DONE]``) or plain JSON
    GET  /v1/models             the scripted model ids

Behaviour is scripted per model id with :class:`ModelScript`; failures are :class:`Fault`
values consumed one per request (``forever=True`` faults are never consumed).

Observability (all safe to read from the test thread): ``requests``, ``disconnects``,
``active_streams``, ``wait_for(predicate, timeout)`` and ``async_wait_for(...)``.

A *disconnect* is recorded when the **client** goes away before the server finished its answer
(stream not yet at ``[DONE]``, a hung request, a non-stream reply still "generating"). It is
detected two ways, whichever comes first: every wait in a handler polls ``request.transport``
(aiohttp sets it to ``None`` / closing in ``connection_lost``), and every write catches
``ConnectionResetError`` (aiohttp raises ``ClientConnectionResetError``, a subclass, when writing
to a closing transport). Server-initiated closes (``Fault.cut``) and shutdown are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Reply = str | Callable[[dict[str, Any]], str] | None

#: Hard cap on the chunks a ``Fault.runaway()`` stream sends (then it ends with finish "length").
RUNAWAY_MAX_CHUNKS = 100_000
#: Default lifetime of a server before it shuts itself down, in seconds.
DEFAULT_MAX_LIFETIME = 600.0
#: How often handlers check whether the client is still there while they wait, in seconds.
POLL_INTERVAL = 0.01

CONTEXT_LENGTH_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "{tokens} tokens. Please reduce the length of the messages."
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "invalid_request_error",
    408: "timeout",
    409: "conflict",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}


@dataclass(frozen=True)
class Fault:
    """One scripted failure. Build with the class methods, not the constructor."""

    kind: str  # "status" | "hang" | "cut" | "malformed" | "runaway"
    status_code: int = 500
    message: str = ""
    error_type: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    should_retry: bool | None = None
    after_chunks: int = 0
    forever: bool = False

    @classmethod
    def status(
        cls,
        code: int,
        message: str = "The server had an error while processing your request.",
        retry_after: float | None = None,
        *,
        error_type: str | None = None,
        error_code: str | None = None,
        should_retry: bool | None = None,
        forever: bool = False,
    ) -> Fault:
        """An HTTP error with an OpenAI-style body ``{"error": {"message", "type", "code"}}``.

        ``retry_after`` adds a ``Retry-After`` header (seconds, float allowed);
        ``should_retry`` adds the openai SDK's ``x-should-retry`` header (``False`` stops the
        SDK from retrying a 429/5xx; ``True`` makes it retry anything).
        """
        if error_type is None:
            error_type = _ERROR_TYPES.get(code, "server_error" if code >= 500 else "api_error")
        return cls(
            kind="status",
            status_code=code,
            message=message,
            error_type=error_type,
            error_code=error_code,
            retry_after=retry_after,
            should_retry=should_retry,
            forever=forever,
        )

    @classmethod
    def context_length_exceeded(cls, tokens: int = 9000, *, forever: bool = False) -> Fault:
        """OpenAI's 400 ``context_length_exceeded`` error (code, type and message as OpenAI)."""
        return cls.status(
            400,
            CONTEXT_LENGTH_MESSAGE.format(tokens=tokens),
            error_type="invalid_request_error",
            error_code="context_length_exceeded",
            forever=forever,
        )

    @classmethod
    def rate_limit(
        cls,
        retry_after: float | None = None,
        *,
        should_retry: bool | None = None,
        forever: bool = False,
    ) -> Fault:
        """A 429 ``rate_limit_exceeded`` error."""
        return cls.status(
            429,
            "Rate limit reached for requests. Please try again later.",
            retry_after,
            error_type="requests",
            error_code="rate_limit_exceeded",
            should_retry=should_retry,
            forever=forever,
        )

    @classmethod
    def hang(cls, *, forever: bool = False) -> Fault:
        """Accept the request, then send nothing (not even headers) until the client leaves."""
        return cls(kind="hang", forever=forever)

    @classmethod
    def cut(cls, after_chunks: int = 1, *, forever: bool = False) -> Fault:
        """Stream ``after_chunks`` content chunks, then abort the connection without ``[DONE]``.

        Non-stream requests: the connection is aborted before any response is sent.
        """
        return cls(kind="cut", after_chunks=after_chunks, forever=forever)

    @classmethod
    def malformed(cls, after_chunks: int = 0, *, forever: bool = False) -> Fault:
        """After ``after_chunks`` good chunks send ``data: <not JSON>`` (then the rest, [DONE]).

        Non-stream requests: a 200 ``application/json`` body that is not JSON.
        """
        return cls(kind="malformed", after_chunks=after_chunks, forever=forever)

    @classmethod
    def runaway(cls, *, forever: bool = False) -> Fault:
        """Stream tokens until the client disconnects (or ``RUNAWAY_MAX_CHUNKS``).

        Non-stream requests: "generate" (wait ``token_delay`` per chunk) up to the same cap,
        so a client timeout or cancel is the normal way out.
        """
        return cls(kind="runaway", forever=forever)


@dataclass
class ModelScript:
    """How one model id answers.

    ``reply``: the text, or ``callable(request_json) -> str``; ``None`` gives
    ``"Answer from <model id>."``. The text is split into chunks of ``chunk_words`` words
    (each word keeps its trailing whitespace), so joining the chunks gives the reply exactly.
    ``first_token_delay``: seconds before the first chunk; ``token_delay``: between chunks.
    ``faults``: consumed one per request, in order; a ``forever=True`` fault stays in place.
    ``fail_always``: a fault used for every request once ``faults`` is empty.
    ``api_key``: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).
    """

    reply: Reply = None
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    chunk_words: int = 1
    faults: list[Fault] = field(default_factory=list)
    fail_always: Fault | None = None
    api_key: str | None = None
    finish_reason: str = "stop"

    def next_fault(self) -> Fault | None:
        if self.faults:
            fault = self.faults[0]
            if not fault.forever:
                self.faults.pop(0)
            return fault
        return self.fail_always


@dataclass
class RecordedRequest:
    model: str | None
    messages: list[dict[str, Any]]
    json: dict[str, Any]
    headers: dict[str, str]
    time: float  # time.monotonic() when received
    stream: bool
    path: str = "/v1/chat/completions"
    status: int | None = None  # filled in when the answer is chosen (200 for normal/faulty streams)

    @property
    def prompt_text(self) -> str:
        """All message text joined with newlines (handy for assertions)."""
        return "\n".join(_message_text(m) for m in self.messages)


def split_chunks(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split ``text`` into chunks of ``words_per_chunk`` words; ``"".join(...) == text``."""
    pieces = re.findall(r"\s+|\S+\s*", text)
    # A leading whitespace run is its own piece: glue it to the first word.
    if len(pieces) > 1 and pieces[0].isspace():
        pieces[1] = pieces[0] + pieces[1]
        pieces.pop(0)
    n = max(1, int(words_per_chunk))
    return ["".join(pieces[i : i + n]) for i in range(0, len(pieces), n)]


def count_tokens(text: str) -> int:
    """Approximate tokens: whitespace-separated words."""
    return len(text.split())


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class _ClientGone(Exception):
    """The client closed the connection while a handler was still answering."""


class _Call:
    """Per-request bookkeeping."""

    def __init__(self, server: FakeOpenAIServer, request: web.Request, model: str) -> None:
        self.server = server
        self.request = request
        self.model = model

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` (at least one loop turn), raising ``_ClientGone`` if the client
        leaves meanwhile; returns early without error when the server is stopping."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.client_gone():
                raise _ClientGone
            if self.server._stopping:
                raise asyncio.CancelledError
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await asyncio.sleep(0)
                if self.client_gone():
                    raise _ClientGone
                return
            await asyncio.sleep(min(POLL_INTERVAL, remaining))


class FakeOpenAIServer:
    """OpenAI-compatible chat server on 127.0.0.1 in a background thread. See module docs."""

    def __init__(
        self,
        models: dict[str, ModelScript] | None = None,
        *,
        api_key: str | None = None,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
        default_script: ModelScript | None = None,
    ) -> None:
        self.scripts: dict[str, ModelScript] = dict(models or {})
        self.api_key = api_key
        self.max_lifetime = max_lifetime
        self.default_script = default_script
        self.requests: list[RecordedRequest] = []
        self.disconnects: list[str] = []
        self.completed: list[str] = []
        self._active: dict[str, int] = {}
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._stopped = threading.Event()
        self.port: int | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the ``api_base`` for llm)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> FakeOpenAIServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._thread_main, args=(sock,), name=f"fake-openai-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fake OpenAI server did not start in time")
        if self._start_error is not None:
            raise RuntimeError("fake OpenAI server failed to start") from self._start_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (idempotent). In-flight hung/runaway handlers end promptly."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stopped.is_set():
            if thread is not None:
                thread.join(timeout)
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        self._stopped.wait(timeout)
        thread.join(timeout)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._ready.is_set() and not self._stopped.is_set()

    def _thread_main(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup(sock))
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            self._stopped.set()
            loop.close()
            return
        self._ready.set()
        loop.call_later(self.max_lifetime, lambda: loop.create_task(self._shutdown()))
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            self._stopped.set()
            with self._cond:
                self._cond.notify_all()

    async def _startup(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        try:
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            asyncio.get_running_loop().stop()

    # ----------------------------------------------------------------- scripting
    def add_model(self, model_id: str, script: ModelScript | None = None) -> ModelScript:
        """Script ``model_id`` (replacing any earlier script); returns the script."""
        script = script if script is not None else ModelScript()
        with self._cond:
            self.scripts[model_id] = script
        return script

    def script(self, model_id: str) -> ModelScript:
        return self.scripts[model_id]

    # ----------------------------------------------------------------- observability
    @property
    def active_streams(self) -> int:
        """Chat requests (stream or not) the server is answering right now."""
        with self._cond:
            return sum(self._active.values())

    def active_for(self, model_id: str) -> int:
        with self._cond:
            return self._active.get(model_id, 0)

    def requests_for(self, model_id: str) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.model == model_id]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, *, raise_on_timeout: bool = True
    ) -> bool:
        """Block (no ``await``) until ``predicate()`` is truthy; ``TimeoutError`` after
        ``timeout`` seconds (or ``False`` with ``raise_on_timeout=False``).

        Do not call this from a coroutine that the client under test needs to make progress
        (it would block that event loop); use :meth:`async_wait_for` there.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if raise_on_timeout:
                        raise TimeoutError(f"condition not met within {timeout} s")
                    return False
                self._cond.wait(min(remaining, 0.05))

    async def async_wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, *, raise_on_timeout: bool = True
    ) -> bool:
        """Like :meth:`wait_for` but yields to the running event loop while waiting."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                if raise_on_timeout:
                    raise TimeoutError(f"condition not met within {timeout} s")
                return False
            await asyncio.sleep(0.01)

    def reset(self) -> None:
        """Forget recorded requests, disconnects and completions (scripts stay)."""
        with self._cond:
            self.requests.clear()
            self.disconnects.clear()
            self.completed.clear()

    # ----------------------------------------------------------------- handlers
    async def _models(self, request: web.Request) -> web.Response:
        with self._cond:
            ids = list(self.scripts)
        data = [
            {"id": mid, "object": "model", "created": 0, "owned_by": "fake-openai"} for mid in ids
        ]
        return web.json_response({"object": "list", "data": data})

    def _auth_error(self, request: web.Request, script: ModelScript | None) -> web.Response | None:
        required = (script.api_key if script and script.api_key else None) or self.api_key
        if required is None:
            return None
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {required}":
            return None
        given = header.removeprefix("Bearer ")
        shown = (given[:3] + "*" * 4 + given[-4:]) if len(given) > 8 else "****"
        return _error_response(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            return _error_response(400, f"Invalid JSON body: {exc}", "invalid_request_error")
        model = str(body.get("model"))
        stream = bool(body.get("stream"))
        record = RecordedRequest(
            model=model,
            messages=list(body.get("messages") or []),
            json=body,
            headers=dict(request.headers),
            time=time.monotonic(),
            stream=stream,
            path=request.path,
        )
        with self._cond:
            self.requests.append(record)
            script = self.scripts.get(model, self.default_script)
            fault = script.next_fault() if script is not None else None
            self._cond.notify_all()

        auth = self._auth_error(request, script)
        if auth is not None:
            record.status = auth.status
            return auth
        if script is None:
            record.status = 404
            return _error_response(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if fault is not None and fault.kind == "status":
            record.status = fault.status_code
            return _fault_response(fault)
        record.status = 200

        call = _Call(self, request, model)
        with self._cond:
            self._active[model] = self._active.get(model, 0) + 1
            self._cond.notify_all()
        finished = False
        try:
            if fault is not None and fault.kind == "hang":
                while True:
                    await call.pause(3600)
            if stream:
                response = await self._stream(call, script, fault, body)
            else:
                response = await self._plain(call, script, fault, body)
            finished = True
            return response
        except (_ClientGone, ConnectionResetError):
            with self._cond:
                self.disconnects.append(model)
            raise asyncio.CancelledError from None  # nothing more to send; aiohttp drops it
        finally:
            with self._cond:
                self._active[model] -= 1
                if finished:
                    self.completed.append(model)
                self._cond.notify_all()

    def _reply_text(self, script: ModelScript, model: str, body: dict[str, Any]) -> str:
        reply = script.reply
        if reply is None:
            return f"Answer from {model}."
        if callable(reply):
            return str(reply(body))
        return reply

    async def _plain(
        self, call: _Call, script: ModelScript, fault: Fault | None, body: dict[str, Any]
    ) -> web.StreamResponse:
        if fault is not None and fault.kind == "cut":
            _abort(call.request)
            raise asyncio.CancelledError
        if fault is not None and fault.kind == "runaway":
            await call.pause(script.first_token_delay)
            for _ in range(RUNAWAY_MAX_CHUNKS):
                await call.pause(script.token_delay)
            text = " ".join(f"w{i}" for i in range(RUNAWAY_MAX_CHUNKS))
            finish = "length"
        else:
            text = self._reply_text(script, call.model, body)
            chunks = split_chunks(text, script.chunk_words)
            await call.pause(script.first_token_delay)
            await call.pause(script.token_delay * max(0, len(chunks) - 1))
            finish = script.finish_reason
        if fault is not None and fault.kind == "malformed":
            broken = '{"id": "chatcmpl-broken", "choices": ['
            return web.Response(status=200, text=broken, content_type="application/json")
        payload = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(body, text),
        }
        return web.json_response(payload)

    async def _stream(
        self, call: _Call, script: ModelScript, fault: Fault | None, body: dict[str, Any]
    ) -> web.StreamResponse:
        request = call.request
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        cid, created, model = _completion_id(), int(time.time()), call.model
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return _sse(data)

        # Pre-encoded around the text: per chunk only the piece is JSON-encoded, so that the
        # benchmarks' loopback server is not their bottleneck.
        head, tail = chunk({"content": "\x00"}).split(b'"\\u0000"')

        def content_chunk(piece: str) -> bytes:
            return head + json.dumps(piece).encode() + tail

        async def send(data: bytes) -> None:
            if call.client_gone():
                raise _ClientGone
            try:
                await response.write(data)
            except ConnectionError as exc:  # reset by the client mid-write
                raise _ClientGone from exc

        runaway = fault is not None and fault.kind == "runaway"
        if runaway:
            text_chunks: Any = (f"w{i} " for i in range(RUNAWAY_MAX_CHUNKS))
        else:
            text_chunks = split_chunks(self._reply_text(script, model, body), script.chunk_words)

        await call.pause(script.first_token_delay)
        await send(chunk({"role": "assistant", "content": "", "refusal": None}))
        sent_text: list[str] = []
        for index, piece in enumerate(text_chunks):
            if fault is not None and fault.kind == "cut" and index >= fault.after_chunks:
                _abort(request)
                raise asyncio.CancelledError
            if fault is not None and fault.kind == "malformed" and index == fault.after_chunks:
                await send(b"data: {this is not json\n\n")
            if index > 0:
                await call.pause(script.token_delay)
            await send(content_chunk(piece))
            sent_text.append(piece)
        if fault is not None and fault.kind == "cut":  # fewer chunks than after_chunks
            _abort(request)
            raise asyncio.CancelledError
        if fault is not None and fault.kind == "malformed" and fault.after_chunks >= len(sent_text):
            await send(b"data: {this is not json\n\n")
        finish = "length" if runaway else script.finish_reason
        await send(chunk({}, finish))
        if include_usage:
            usage_chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": _usage(body, "".join(sent_text)),
            }
            await send(_sse(usage_chunk))
        await send(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


# --------------------------------------------------------------------- helpers
def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(count_tokens(_message_text(m)) for m in body.get("messages") or [])
    completion = count_tokens(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _error_response(
    status: int,
    message: str,
    error_type: str | None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _fault_response(fault: Fault) -> web.Response:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = (
            str(int(fault.retry_after))
            if float(fault.retry_after).is_integer()
            else str(fault.retry_after)
        )
    if fault.should_retry is not None:
        headers["x-should-retry"] = "true" if fault.should_retry else "false"
    return _error_response(
        fault.status_code, fault.message, fault.error_type, fault.error_code, headers
    )
