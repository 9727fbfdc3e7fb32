"""The lean streaming transport for ``llm``'s OpenAI-compatible chat models.

``llm``'s OpenAI plugin streams through the openai SDK, which builds a pydantic object for every
SSE chunk (about 260 µs each, against ~3 µs for ``orjson.loads``) on top of httpx. Under tens of
concurrent streams that is most of a process's CPU. This transport keeps everything of ``llm``
that matters (the model registry, options through the plugin's own ``build_kwargs``, system
prompts and conversation messages through its ``build_messages``, the ``Response`` with
``response_json``, usage and ``llm logs``) and replaces only the streaming HTTP call: one shared
aiohttp session per event loop, a small SSE line splitter and orjson.

It handles a streamed prompt to a plain ``AsyncChat`` model (the plugin's chat-completions models
and every chat entry of ``extra-openai-models.yaml``) without tools, tool results, attachments or
Azure-style settings; everything else (sync models, non-streaming calls, ``Responses``-API and
``completion:`` models, subclasses that override the request, ``LLM_OPENAI_SHOW_RESPONSES``)
runs ``llm``'s own code. HTTP errors are raised as the openai SDK's own exception classes, built
from the same status, headers and body, so retries, ``Retry-After`` and the provider's message
are the same either way. See ``docs/gateway.md`` for what differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import types
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

__all__ = ["LeanTransport", "lean_available"]

_DEFAULT_BASE = "https://api.openai.com/v1"
# The openai SDK's defaults (openai.DEFAULT_TIMEOUT): 5 s to connect, 600 s per read.
_CONNECT_TIMEOUT, _READ_TIMEOUT = 5.0, 600.0


def lean_available() -> bool:
    """Whether aiohttp and orjson, which the transport needs, are installed."""
    try:
        import aiohttp  # noqa: F401
        import orjson  # noqa: F401
    except ImportError:
        return False
    return True


class LeanTransport:
    """One aiohttp session per event loop, shared by every model it is installed on."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._proxies: dict[tuple[str, str | None], tuple[Any, Any] | None] = {}
        self.streams = 0
        """Streams this transport carried (the rest went through ``llm``'s own path)."""

    def install(self, model: Any) -> Any:
        """Route ``model``'s eligible streamed prompts through this transport; returns it.

        Models it cannot serve (anything but an unmodified ``AsyncChat``) are left as they are.
        """
        if not _eligible(model):
            return model
        original = model.execute
        transport = self

        async def execute(
            self: Any,
            prompt: Any,
            stream: bool,
            response: Any,
            conversation: Any = None,
            key: str | None = None,
        ) -> AsyncGenerator[Any, None]:
            if not (stream and _plain_prompt(self, prompt)):
                async for item in original(prompt, stream, response, conversation, key):
                    yield item
                return
            async for item in transport._execute(self, prompt, response, key):
                yield item

        model.execute = types.MethodType(execute, model)
        return model

    def session(self) -> Any:
        """The running loop's shared aiohttp session (made on first use)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.get(loop)
            if session is None or session.closed:
                session = aiohttp.ClientSession(
                    # Proxies come from the environment through proxy_for() (once per host),
                    # not trust_env: aiohttp's trust_env reads ~/.netrc and the proxy variables
                    # in a worker thread on every request (two thread hops per stream).
                    trust_env=False,
                    connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=_READ_TIMEOUT
                    ),
                    auto_decompress=True,
                )
                self._sessions[loop] = session
                self._proxies.clear()  # a new session reads the environment again
                # A notebook never closes it: drop its connections when the loop goes (or at
                # exit) instead of aiohttp's "Unclosed client session" warnings.
                weakref.finalize(loop, _drop, session)
            return session

    async def proxy_for(self, url: str) -> tuple[Any, Any] | None:
        """The proxy (and its credentials) for ``url`` from ``HTTP(S)_PROXY``/``NO_PROXY``
        (and ``~/.netrc`` for the proxy's credentials), as httpx finds them under the SDK;
        ``None``: connect directly. Read once per scheme and host, in a worker thread."""
        from yarl import URL

        target = URL(url)
        key = (target.scheme, target.host)
        if key not in self._proxies:
            self._proxies[key] = await asyncio.to_thread(_env_proxy, target)
        return self._proxies[key]

    async def aclose(self) -> None:
        """Close the running loop's session (its connections)."""
        with self._lock:
            session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()

    async def _execute(
        self, model: Any, prompt: Any, response: Any, key: str | None
    ) -> AsyncGenerator[Any, None]:
        from llm.default_plugins.openai_models import redact_data
        from llm.parts import StreamEvent
        from llm.utils import remove_dict_none_values

        if prompt.system and not model.allows_system_prompt:
            raise NotImplementedError("Model does not support system prompts")
        messages = model.build_messages(
            prompt, None, image_detail=getattr(prompt.options, "image_detail", None)
        )
        kwargs = model.build_kwargs(prompt, True)
        body = {"model": model.model_name or model.model_id, "messages": messages, "stream": True}
        body.update(kwargs)
        api_key = model.get_key(key) if model.needs_key else "DUMMY_KEY"
        base = (model.api_base or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE).rstrip("/")
        url = f"{base}/chat/completions"
        headers = _headers(api_key, model.headers)
        self.streams += 1
        combined = _Combined()
        session = self.session()
        proxy = await self.proxy_for(url)
        async for data in _post_stream(session, url, headers, body, proxy):
            combined.add(data)
            choices = data.get("choices")
            if choices:
                delta = choices[0].get("delta")
                content = delta.get("content") if delta else None
                if content:
                    yield StreamEvent(type="text", chunk=content)
        usage = combined.usage
        response.response_json = remove_dict_none_values(combined.result())
        model.set_usage(response, dict(usage) if usage else None)
        if usage and (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"):
            yield StreamEvent(type="reasoning", chunk="", redacted=True)
        response._prompt_json = redact_data({"messages": messages})


def _env_proxy(url: Any) -> tuple[Any, Any] | None:
    from aiohttp.helpers import get_env_proxy_for_url

    try:
        return get_env_proxy_for_url(url)
    except LookupError:  # none set for its scheme, or NO_PROXY names its host
        return None


def _drop(session: Any) -> None:
    """Close a session's connections without its event loop (which may be closed by now)."""
    if not session.closed:
        with contextlib.suppress(Exception):
            session.connector._close(abort_ssl=True)  # the synchronous part of close()


def _eligible(model: Any) -> bool:
    """An ``AsyncChat`` whose request code is the plugin's own, with no Azure-style settings."""
    try:
        from llm.default_plugins.openai_models import AsyncChat, _Shared
    except ImportError:
        return False
    if not isinstance(model, AsyncChat) or not lean_available():
        return False
    cls = type(model)
    if cls.execute is not AsyncChat.execute or cls.get_client is not _Shared.get_client:
        return False
    return not (model.api_type or model.api_version or model.api_engine)


def _plain_prompt(model: Any, prompt: Any) -> bool:
    """No tools, tool results or attachments, and no debugging client asked for."""
    if os.environ.get("LLM_OPENAI_SHOW_RESPONSES"):
        return False
    if prompt.tools or prompt.tool_results or prompt.attachments:
        return False
    from llm.parts import AttachmentPart, TextPart

    return all(
        isinstance(part, TextPart) and not isinstance(part, AttachmentPart)
        for message in prompt.messages
        for part in message.parts
    )


def _headers(api_key: str, extra: dict[str, str] | None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    # The SDK sends these from the environment too.
    if org := os.environ.get("OPENAI_ORG_ID"):
        headers["OpenAI-Organization"] = org
    if project := os.environ.get("OPENAI_PROJECT_ID"):
        headers["OpenAI-Project"] = project
    headers.update(extra or {})
    return headers


class _Combined:
    """``combine_chunks`` of llm's OpenAI plugin, over the chunks as dicts."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.role: str | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.first: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if self.first is None:
            self.first = chunk
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            # As the plugin does: the role of the last choice seen (usually None).
            self.role = delta.get("role")
            if delta.get("content") is not None:
                self.content.append(delta["content"])
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]

    def result(self) -> dict[str, Any]:
        combined: dict[str, Any] = {
            "content": "".join(self.content),
            "role": self.role,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
        }
        if self.first is not None:
            for key in ("id", "object", "model", "created", "index"):
                if self.first.get(key) is not None:
                    combined[key] = self.first[key]
        return combined


async def _post_stream(
    session: Any,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    proxy: tuple[Any, Any] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """POST ``body`` (through ``proxy``: its URL and credentials) and yield each SSE ``data:``
    payload, parsed, until ``[DONE]``."""
    import aiohttp
    import orjson

    from consortium_lab.gateway import lean_errors

    payload = orjson.dumps(body)
    try:
        if proxy is None:
            response = await session.post(url, data=payload, headers=headers)
        else:
            response = await session.post(
                url, data=payload, headers=headers, proxy=proxy[0], proxy_auth=proxy[1]
            )
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise lean_errors.timeout(url) from exc
    except aiohttp.ClientError as exc:
        raise lean_errors.connection(url) from exc
    try:
        if response.status >= 400:
            raise await lean_errors.status(url, response)
        async for data in _sse_data(response):
            if data.startswith(b"[DONE]"):
                break
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                import json

                json.loads(data)  # the SDK's own error and message (json's wording)
                raise
            if isinstance(parsed, dict) and parsed.get("error"):
                raise lean_errors.streamed(url, parsed["error"])
            yield parsed
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise lean_errors.timeout(url) from exc
    except aiohttp.ClientError as exc:
        raise lean_errors.connection(url) from exc
    finally:
        response.release()


async def _sse_data(response: Any) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event (several ``data:`` lines joined by newlines)."""
    buffer = b""
    data: list[bytes] = []
    async for piece in response.content.iter_any():
        buffer += piece
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # Other fields (event:, id:, retry:) and comments carry nothing for chat chunks.
        buffer = buffer[start:]
    if data:
        yield b"\n".join(data)
