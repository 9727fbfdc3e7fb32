"""Errors in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``, never a trace.

Every handler raises :class:`ApiError`; the app's middleware answers it. Provider failures,
request-validation errors and aiohttp's own HTTP errors are mapped here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from consortium_lab.gateway.failures import CallFailed

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "ApiError",
    "backend_down",
    "failure_error",
    "http_error",
    "internal_error",
    "ledger_unavailable",
    "validation_error",
]


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
        """The JSON body of the error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }

    def response(self) -> web.Response:
        """The error as an aiohttp response."""
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


def http_error(request: web.Request, exc: web.HTTPException) -> ApiError:
    """aiohttp's own HTTP errors (unknown route, wrong method, body too large) in our shape."""
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


def internal_error(ref: str) -> ApiError:
    """The 500 for a bug: a generic message with the reference its traceback is logged under."""
    return ApiError(
        500,
        f"The gateway hit an internal error (reference {ref}); it has been logged.",
        type="server_error",
        code="internal_error",
    )


def backend_down(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the ledger's, cache's or quota store's backend
    not answering: Redis down or unreachable, SQLite's file unusable."""
    import sqlite3

    try:
        import redis
    except ImportError:  # the redis extra is not installed: only SQLite can be down
        redis_errors: tuple[type[BaseException], ...] = ()
    else:
        redis_errors = (redis.ConnectionError, redis.TimeoutError)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, redis_errors):
            return True
        # A locked, unreadable or vanished file; not a mistake in our SQL (that is a bug).
        if isinstance(current, sqlite3.OperationalError) and not any(
            bug in str(current) for bug in ("syntax error", "no such")
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def ledger_unavailable() -> ApiError:
    """503 ``ledger_unavailable``: quotas, usage and cache cannot be kept right now."""
    return ApiError(
        503,
        "The gateway's ledger (quotas, usage, cache) is unreachable; try again shortly.",
        type="server_error",
        code="ledger_unavailable",
        headers={"Retry-After": "5"},
    )
