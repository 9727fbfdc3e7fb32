"""Which ``llm`` embedding model an llm-consortium ``embedding_backend`` means.

llm-consortium 0.8.0 accepts three backends (``openai``, ``sentence-transformers``,
``chutes``), each its own client. We embed through ``llm``'s embedding models instead, so keys,
plugins and local models work as they do for chat models:

- ``openai``: ``llm``'s own OpenAI embedding model of that name (default
  ``text-embedding-3-small``, upstream's default);
- ``sentence-transformers``: the ``llm-sentence-transformers`` plugin's
  ``sentence-transformers/<name>`` (default ``all-MiniLM-L6-v2``, upstream's default);
- ``llm`` (ours): ``embedding_model`` is any ``llm`` embedding model id or alias;
- ``chutes``: refused (no ``llm`` plugin serves it).
"""

from __future__ import annotations

import llm

__all__ = [
    "EMBEDDING_BACKENDS",
    "EmbeddingBackendError",
    "embedding_model_id",
    "resolve_embedding_model",
]

EMBEDDING_BACKENDS = ("openai", "sentence-transformers", "llm")
"""The ``embedding_backend`` values this package computes geometry with."""

_DEFAULT_MODEL = {"openai": "text-embedding-3-small", "sentence-transformers": "all-MiniLM-L6-v2"}
_REFUSED = {
    "chutes": "no llm plugin serves Chutes embeddings; use embedding_backend='llm' with an "
    "llm embedding model, 'openai' or 'sentence-transformers'",
}
_PLUGIN_HINT = {
    "openai": "llm's OpenAI plugin knows text-embedding-3-small, text-embedding-3-large and "
    "text-embedding-ada-002",
    "sentence-transformers": "install the llm-sentence-transformers plugin and register it",
    "llm": "`llm embed-models` lists them",
}


class EmbeddingBackendError(ValueError):
    """A config's ``embedding_backend``/``embedding_model`` names nothing we can embed with."""


def embedding_model_id(backend: str | None, model: str | None) -> str | None:
    """The ``llm`` embedding model id for upstream's ``backend`` and ``model``; ``None`` when
    no backend is configured. Raises :class:`EmbeddingBackendError` naming the backend."""
    if backend is None:
        return None
    if backend in _REFUSED:
        raise EmbeddingBackendError(
            f"embedding_backend: {backend!r} is not supported: {_REFUSED[backend]}"
        )
    if backend not in EMBEDDING_BACKENDS:
        raise EmbeddingBackendError(
            f"embedding_backend: unknown backend {backend!r}; supported: "
            + ", ".join(repr(b) for b in EMBEDDING_BACKENDS)
        )
    if backend == "llm":
        if not model:
            raise EmbeddingBackendError(
                "embedding_model: embedding_backend 'llm' needs an llm embedding model id"
            )
        return model
    name = model or _DEFAULT_MODEL[backend]
    if backend == "sentence-transformers" and not name.startswith("sentence-transformers/"):
        return f"sentence-transformers/{name}"
    return name


def resolve_embedding_model(backend: str | None, model: str | None) -> llm.EmbeddingModel | None:
    """The ``llm`` embedding model the config names (``None`` without a backend).

    Raises :class:`EmbeddingBackendError` naming the backend and the model ``llm`` lacks.
    """
    model_id = embedding_model_id(backend, model)
    if model_id is None:
        return None
    try:
        return llm.get_embedding_model(model_id)
    except llm.UnknownModelError:
        raise EmbeddingBackendError(
            f"embedding_model: llm has no embedding model {model_id!r} for embedding_backend "
            f"{backend!r} ({_PLUGIN_HINT[backend or 'llm']})"
        ) from None
