"""The lean transport's failures as the openai SDK's own exceptions.

Built from the same status, headers and body the SDK would have seen, so the gateway reads the
same kind, ``Retry-After`` and provider message from either path, and code that catches
``openai.RateLimitError`` (or reads ``exc.status_code``, ``exc.body``) keeps working.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["connection", "status", "streamed", "timeout"]


def _http() -> Any:
    """The HTTP library the installed openai SDK builds its requests and responses with."""
    import openai._exceptions as exceptions

    for name in ("httpx2", "httpx"):
        module = getattr(exceptions, name, None)
        if module is not None:
            return module
    return importlib.import_module("httpx")


def _request(url: str) -> Any:
    return _http().Request("POST", url)


def timeout(url: str) -> Exception:
    """What the SDK raises when a connect or read times out."""
    import openai

    return openai.APITimeoutError(request=_request(url))


def connection(url: str) -> Exception:
    """What the SDK raises when the connection is refused, reset or cut mid-stream."""
    import openai

    return openai.APIConnectionError(request=_request(url))


def streamed(url: str, error: Any) -> Exception:
    """An ``{"error": ...}`` event inside a stream, as the SDK reports it."""
    import openai

    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=_request(url), body=error)


async def status(url: str, response: Any) -> Exception:
    """An HTTP error status, read from an aiohttp response, as the SDK's status error."""
    import openai
    import orjson

    raw = await response.read()
    http = _http()
    wrapped = http.Response(
        response.status,
        headers=list(response.headers.items()),
        content=raw,
        request=_request(url),
    )
    message = f"Error code: {response.status}"
    text = raw.decode("utf-8", "replace").strip()
    body: Any = text
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
    data = body.get("error", body) if isinstance(body, dict) else body
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    cls = classes.get(response.status)
    if cls is None:
        cls = openai.InternalServerError if response.status >= 500 else openai.APIStatusError
    error_: Exception = cls(message, response=wrapped, body=data)
    return error_
