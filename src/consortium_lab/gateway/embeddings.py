"""Embedding calls: ``llm``'s embedding models, with the gateway's timeout and retries.

Chat calls go through :meth:`Gateway.call`; an embedding call has no stream, cache key or
quota of its own, so it takes only what applies to it: the gateway's ``timeout`` on the whole
call, its ``retries`` (none in remote mode) with its backoff on transient failures, and the
same failure kinds (:class:`CallFailed`). ``embed_multi`` is synchronous in ``llm``: it runs in
a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import llm

from consortium_lab.gateway.failures import RETRYABLE_KINDS, CallFailed, classify, error_message

if TYPE_CHECKING:
    from consortium_lab.gateway.core import Gateway

__all__ = ["embed_texts"]


async def embed_texts(
    gateway: Gateway, model: llm.EmbeddingModel, texts: Sequence[str]
) -> list[list[float]]:
    """One vector per text, in order, from ``model`` (``llm``'s ``embed_multi``).

    Raises :class:`CallFailed` with the model's own message when it fails for good.
    """
    from tenacity import (
        AsyncRetrying,
        retry_if_exception,
        stop_after_attempt,
        wait_random_exponential,
    )

    async def once() -> list[list[float]]:
        try:
            work = asyncio.to_thread(lambda: [list(v) for v in model.embed_multi(list(texts))])
            vectors = await asyncio.wait_for(work, gateway.timeout)
        except Exception as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else classify(exc)
            raise CallFailed(kind, f"{model.model_id}: {error_message(exc)}") from exc
        if len(vectors) != len(texts):
            raise CallFailed(
                "malformed", f"{model.model_id}: {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors

    retrying = AsyncRetrying(
        stop=stop_after_attempt(gateway.retries + 1),
        wait=wait_random_exponential(multiplier=gateway.backoff, max=gateway.max_backoff),
        retry=retry_if_exception(
            lambda exc: isinstance(exc, CallFailed) and exc.kind in RETRYABLE_KINDS
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await once()
    raise AssertionError("unreachable: tenacity re-raises the last failure")
