"""Upstream's ``geometric_confidence``, ``centroid_vector`` and ``outlier_indices`` for a
compat run, when its config names an embedding backend.

llm-consortium 0.8.0 embeds each answer the arbiter sees (its full text) and measures how
close the answers lie to their centroid (:mod:`consortium_lab.analysis.geometry`). We do the
same for every iteration, through ``llm``'s embedding model for the configured backend
(:mod:`consortium_lab.config.embedding`) and the gateway's timeout and retries
(:mod:`consortium_lab.gateway.embeddings`). Without a backend the keys are ``None``: nothing
was measured (upstream's ``0.0`` would read as "no agreement"). An embedding call that fails
leaves them ``None`` and says why in ``geometry_error``; the run itself is kept.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import llm

from consortium_lab.analysis.geometry import geometry_of
from consortium_lab.compat.result import NOT_MEASURED
from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.config.embedding import resolve_embedding_model
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.embeddings import embed_texts
from consortium_lab.gateway.failures import CallFailed

__all__ = ["Embedder", "iteration_geometry"]

logger = logging.getLogger(__name__)

_CACHE_SIZE = 256  # upstream's EmbeddingService keeps as many vectors


class Embedder:
    """The config's embedding model and, when ``embedding_cache_enabled``, the vectors of
    texts it already embedded (as upstream's service caches them, per orchestrator)."""

    def __init__(self, model: llm.EmbeddingModel, gateway: Gateway, *, cache: bool) -> None:
        self.model = model
        self.gateway = gateway
        self.cache: dict[str, list[float]] | None = {} if cache else None

    @classmethod
    def for_config(cls, config: ConsortiumConfig, gateway: Gateway) -> Embedder | None:
        """The embedder the config names; ``None`` without ``embedding_backend``. Raises
        :class:`~consortium_lab.config.embedding.EmbeddingBackendError` naming the backend."""
        model = resolve_embedding_model(config.embedding_backend, config.embedding_model)
        if model is None:
            return None
        return cls(model, gateway, cache=config.embedding_cache_enabled)

    async def vectors(self, texts: list[str]) -> list[list[float]]:
        """One vector per text; each distinct text not in the cache is embedded once."""
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        known = dict(self.cache or {})
        missing = list(dict.fromkeys(k for k in keys if k not in known))
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            fresh = await embed_texts(self.gateway, self.model, [text_of[k] for k in missing])
            known.update(zip(missing, fresh, strict=True))
            if self.cache is not None:
                self.cache.update(zip(missing, fresh, strict=True))
                for old in list(self.cache)[: max(0, len(self.cache) - _CACHE_SIZE)]:
                    del self.cache[old]
        return [known[k] for k in keys]


async def iteration_geometry(result: RunResult, embedder: Embedder) -> dict[int, dict[str, Any]]:
    """``{iteration number: geometry keys}`` for each iteration with an answer; the answers
    are those the arbiter saw, in config order (``outlier_indices`` count from 0 among them)."""
    texts = {
        it.number: [m.text for m in result.in_config_order(it.answers) if m.status == "done"]
        for it in result.iterations
    }
    texts = {n: t for n, t in texts.items() if t}
    every = [t for group in texts.values() for t in group]
    if not every:
        return {}
    try:
        vectors = await embedder.vectors(every)
    except CallFailed as exc:
        logger.warning("geometric confidence not computed for run %s: %s", result.run_id, exc)
        return {n: {**NOT_MEASURED, "geometry_error": str(exc)} for n in texts}
    out: dict[int, dict[str, Any]] = {}
    start = 0
    for number, group in texts.items():
        part = vectors[start : start + len(group)]
        start += len(group)
        try:
            measured = geometry_of(part)
        except ValueError as exc:  # vectors of different sizes: the model's fault, say so
            out[number] = {**NOT_MEASURED, "geometry_error": str(exc)}
            continue
        out[number] = {
            "geometric_confidence": measured.confidence,
            "centroid_vector": measured.centroid,
            "outlier_indices": measured.outliers,
        }
    return out
