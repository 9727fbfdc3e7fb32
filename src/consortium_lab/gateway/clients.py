"""One HTTP client per endpoint and key for the OpenAI-compatible ``llm`` models a gateway
calls, with the provider SDK's own retries off (every retry is the gateway's)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any, Literal

__all__ = ["HttpTransport", "SharedClients"]

HttpTransport = Literal["httpx", "aiohttp"]


class SharedClients:
    """The clients a gateway's models share; thread-safe.

    Args:
        http_transport: ``httpx`` (the openai SDK's default) or ``aiohttp`` (the SDK's own
            aiohttp adapter) under the async clients.
        lean: stream the plain prompts of ``llm``'s OpenAI-compatible chat models through the
            lean transport (:mod:`consortium_lab.gateway.lean`); the SDK clients serve the rest.
    """

    def __init__(self, http_transport: HttpTransport = "httpx", *, lean: bool = True) -> None:
        from consortium_lab.gateway.lean import LeanTransport

        self.http_transport = http_transport
        self.lean: LeanTransport | None = LeanTransport() if lean else None
        """The lean streaming transport installed on eligible models (``None``: off)."""
        # Async clients hold a connection pool bound to their event loop: one cache per loop.
        self._clients: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync_clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def share(self, model: Any) -> Any:
        """Give an OpenAI-compatible ``llm`` model one shared client per (endpoint, key).

        ``llm``'s OpenAI plugin builds a new client for every call; each loads the system's CA
        bundle (about 40 ms of CPU here) and opens fresh connections, and it also retries by
        itself (twice, invisibly). We keep the plugin and its request code and only hand it a
        client built once, with its own retries off, so every retry is the gateway's: counted
        once and visible in the metrics. With ``http_transport="aiohttp"`` that client sends
        through the openai SDK's aiohttp adapter instead of httpx: httpcore's pool checks every
        idle connection's socket on each request and each response end (quadratic under
        hundreds of concurrent streams) and keeps only 100 idle connections, so every burst
        reconnects. Models of other plugins are left untouched.
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
                    client = build(key, async_=async_)
                    with_options = getattr(client, "with_options", None)
                    options: dict[str, Any] = {"max_retries": 0}
                    if async_ and self.http_transport == "aiohttp":
                        http_client = _aiohttp_client(client)
                        if http_client is not None:
                            options["http_client"] = http_client
                    cache[ident] = with_options(**options) if with_options else client
                return cache[ident]

        model.get_client = get_client
        return model if self.lean is None else self.lean.install(model)

    async def aclose(self) -> None:
        """Close the shared async clients of the running loop (their connection pools)."""
        if self.lean is not None:
            await self.lean.aclose()
        with self._lock:
            clients = list(self._clients.pop(asyncio.get_running_loop(), {}).values())
        for client in clients:
            close = getattr(client, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def _aiohttp_client(client: Any) -> Any:
    """The openai SDK's own aiohttp HTTP client (``openai.DefaultAioHttpClient``), or ``None``
    where it is not available or the plugin gave the client a special one (llm's
    ``LLM_OPENAI_SHOW_RESPONSES`` logging client)."""
    import os

    if os.environ.get("LLM_OPENAI_SHOW_RESPONSES"):
        return None
    try:
        import openai

        made = openai.DefaultAioHttpClient(
            timeout=getattr(client, "timeout", openai.DEFAULT_TIMEOUT),
            limits=openai.DEFAULT_CONNECTION_LIMITS,
        )
    except Exception:  # no aiohttp, or an SDK without the adapter
        return None
    return made
