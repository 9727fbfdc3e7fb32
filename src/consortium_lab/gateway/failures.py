"""Why a model call failed: the failure kinds, which are worth another attempt, and how a
provider's exception is read (its kind, its own message, the wait it asked for)."""

from __future__ import annotations

import email.utils
import json
import re
import time

__all__ = [
    "RETRYABLE_KINDS",
    "CallFailed",
    "classify",
    "error_message",
    "never_connected",
    "retry_after_seconds",
]

_CONTEXT_WINDOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long", re.I
)
RETRYABLE_KINDS = frozenset({"rate_limit", "server_error", "timeout", "connection", "malformed"})
"""Failure kinds worth another attempt; the others (bad key, bad request, context window,
empty or runaway answers) cannot succeed by asking again."""


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


def _caused_by(exc: BaseException, kind: type[OSError]) -> bool:
    """Whether ``exc`` or one of its causes is (or wraps, as aiohttp's ``os_error``) ``kind``."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, kind) or isinstance(getattr(cause, "os_error", None), kind):
            return True
        cause = cause.__cause__
    return False


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a connection the OS refused or reset."""
    return _caused_by(exc, ConnectionError)


def never_connected(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a connection the server refused, or reset before answering.

    Refused: the request never reached it, so sending it again cannot do anything twice. Reset
    before any answer: what a gateway being killed or restarting does to a request that reached
    its socket (seen in the hub test as ``ECONNRESET`` on the arbiter's call); a dying process
    does nothing with it, so the caller, which only asks when nothing was streamed, may send it
    again too."""
    return _caused_by(exc, ConnectionRefusedError) or _caused_by(exc, ConnectionResetError)


def error_message(exc: BaseException) -> str:
    """The model's own message (the exception type when it has none).

    An HTTP error with an OpenAI-shaped body (the SDK's ``body``: the ``error`` object) gives
    that body's ``message``: a gateway's refusal ("Quota exceeded: ...") reads as the gateway
    wrote it, not as ``Error code: 429 - {...}``.
    """
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str) and message.strip():
            return message.strip()
    text = str(exc).strip() or type(exc).__name__
    if classify(exc) in ("connection", "timeout"):
        # The SDK says only "Connection error.": name whom it could not reach (a gateway's URL
        # tells the user which service is down), never its query string.
        url = getattr(getattr(exc, "request", None), "url", None)
        if url is not None:
            where = str(url).split("?", 1)[0]
            return f"{text.rstrip('.')} (reaching {where})"
    return text
