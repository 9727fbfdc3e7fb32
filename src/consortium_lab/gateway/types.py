"""The gateway's own types, which the engine's events carry: what a call is for and its usage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["Stage", "Usage"]

Stage = Literal["answer", "peer_review", "chair", "arbiter"]
"""What a model call is for: a member's answer, a council member's review of its peers, the
council chairman's synthesis, or the arbiter's synthesis/ranking."""


class Usage(BaseModel):
    """Token usage as reported by the model's provider (``None`` where it reports nothing)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
