"""The OpenAI chat-completions protocol: the request, its messages and options as a gateway
call, the answer's usage fields, and the SSE frames of a streamed answer."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consortium_lab.gateway.calls import CallOutcome
from consortium_lab.service.errors import ApiError

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChunkFrames",
    "StreamOptions",
    "consortium_extra",
    "map_options",
    "messages_to_call",
    "read_json",
    "sse",
    "usage_body",
]


# -- the chat request -------------------------------------------------------------------------
class ChatMessage(BaseModel):
    """One OpenAI chat message (content checked by :func:`messages_to_call`)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Any = None


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` is read."""

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


# -- streaming ----------------------------------------------------------------------------------
class ChunkFrames:
    """The SSE frames of one streamed answer, with the fields every chunk repeats encoded once.

    A content chunk is the pre-encoded head, the text as a JSON string and the pre-encoded
    tail: byte for byte what ``sse`` makes of the whole chunk, without building and encoding
    the dict each time.
    """

    _MARK = "\ufdd0content\ufdd0"  # a noncharacter: never in a model name

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.cid = cid
        self.created = created
        self.model = model
        self._frames: dict[bool, tuple[bytes, bytes] | None] = {}

    def chunk(self, delta: dict[str, Any], finish: str | None, include_usage: bool) -> bytes:
        """One ``chat.completion.chunk`` event."""
        data: dict[str, Any] = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return sse(data)

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


def sse(data: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event holding ``data`` as compact JSON."""
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _json_str(text: str) -> bytes:
    """``json.dumps(text).encode()`` (ASCII-escaped, as ``sse`` encodes strings), directly."""
    return _encode_str(text).encode("ascii")


_encode_str: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring_ascii", None) or (
    json.encoder.encode_basestring_ascii
)


# -- request and answer bodies ----------------------------------------------------------------
async def read_json(request: web.Request, *, object_only: bool = True) -> Any:
    """The request's JSON body (a 400 when it is not JSON, or not an object when
    ``object_only``)."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if object_only and not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
    return body


def usage_body(outcome: CallOutcome | None) -> dict[str, int]:
    """OpenAI's ``usage`` object for an answer (zeros when there is none)."""
    tokens_in = (outcome.usage.input_tokens if outcome else None) or 0
    tokens_out = (outcome.usage.output_tokens if outcome else None) or 0
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


def consortium_extra(outcome: CallOutcome | None) -> dict[str, Any]:
    """The gateway's own facts about an answer (the ``consortium`` field): who served it,
    whether from the cache, attempts and cost."""
    if outcome is None:
        return {}
    return {
        "served_by": outcome.served_by,
        "cached": outcome.cached,
        "attempts": outcome.attempts,
        "cost": outcome.cost,
    }
