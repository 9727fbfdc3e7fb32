"""What the gateway is asked (a :class:`CallRequest`) and what it answers (a
:class:`CallOutcome`), with the per-model settings it applies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.types import Stage, Usage

__all__ = ["CacheMode", "CallOutcome", "CallRequest", "DeltaCallback", "ModelSettings"]


DeltaCallback = Callable[[str, str], None]
"""Called with ``(text, channel)`` for each streamed piece; channel is 'text' or 'reasoning',
or 'restart' (with empty text) when a retry or fallback starts the answer over."""

CacheMode = Literal["use", "bypass", "refresh"]


@dataclass(frozen=True)
class CallRequest:
    """One model call: who is asked, what, with which history, options and limits."""

    model: str
    prompt: str
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=lambda: Limits())
    stage: Stage = "answer"
    instance: int = 1
    cache: CacheMode = "use"
    user: str | None = None
    sample: str | None = None
    """Which repeated sample this call is (an evaluation's ``<condition>#<index>``): part of
    the cache key and of the seed, so two samples are never one cached answer."""


@dataclass
class CallOutcome:
    """A finished call."""

    text: str
    reasoning: str
    usage: Usage
    latency_ms: float
    first_token_ms: float | None
    served_by: str
    cached: bool = False
    attempts: int = 1
    response_id: str | None = None
    cost: float | None = None
    truncated: bool = False
    """The model stopped at its own max-tokens option: the answer is kept, marked as cut."""


class ModelSettings(BaseModel):
    """Per-model gateway settings (``Gateway(model_settings={"gpt-4o": {...}})``)."""

    cache: bool = True
    ttl: float | None = None
    concurrency: int | None = None
    parallel_sync: bool = Field(
        False,
        description="Let a sync-only model take several calls at once. Off by default: local "
        "model plugins keep one native context per model, which overlapping calls corrupt "
        "(see gateway/sync_calls.py for the plugins known to be thread-safe).",
    )
