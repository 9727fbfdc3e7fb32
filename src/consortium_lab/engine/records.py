"""One record per concept: what a member call and an arbiter synthesis produced.

:class:`MemberRecord` and :class:`SynthesisRecord` own these fields, and nothing else lists
them: the events :class:`~consortium_lab.engine.events.MemberDone`,
:class:`~consortium_lab.engine.events.MemberFailed` and
:class:`~consortium_lab.engine.events.SynthesisReady` *are* records (they subclass them, so
their JSON keeps its flat shape), :class:`~consortium_lab.engine.result.RunResult` folds them
into records, the run log derives its ``member_responses`` and ``arbiter_decisions`` columns
from their fields, and the runs API reads them back. A field added here reaches every one of
them; the run log needs a migration for it (a test says which column is missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, Field

from consortium_lab.gateway.types import Stage, Usage

__all__ = [
    "CallStats",
    "MemberCall",
    "MemberRecord",
    "MemberStatus",
    "Record",
    "SynthesisRecord",
    "TieBreak",
    "VoteCount",
]

MemberStatus = Literal["done", "failed"]


class Record(BaseModel):
    """A record: built from the event that carries it, flattened into a row and back."""

    @classmethod
    def fields_of(cls, source: object) -> dict[str, Any]:
        """This record's fields read off ``source`` (an event, a gateway outcome...)."""
        return {name: getattr(source, name) for name in cls.model_fields}

    @classmethod
    def of(cls, source: object) -> Self:
        """This record's fields of ``source`` (an event that carries it), as a plain record."""
        return cls.model_validate(cls.fields_of(source))

    @classmethod
    def flat_fields(cls) -> list[str]:
        """The field names with ``usage`` spread into its own (``input_tokens``...): the
        columns of a table or frame of these records."""
        names: list[str] = []
        for name in cls.model_fields:
            names += list(Usage.model_fields) if name == "usage" else [name]
        return names

    def to_flat(self) -> dict[str, Any]:
        """The record as one flat row (see :meth:`flat_fields`)."""
        row = self.model_dump()
        if "usage" in row:
            row.update(row.pop("usage"))
        return row

    @classmethod
    def from_flat(cls, row: Mapping[str, Any]) -> Self:
        """A record from a flat row (extra keys ignored; missing ones take their defaults)."""
        data = {k: row[k] for k in cls.model_fields if k in row and row[k] is not None}
        if "usage" in cls.model_fields:
            data["usage"] = Usage(**{k: row.get(k) for k in Usage.model_fields})
        return cls.model_validate(data)


class MemberCall(Record):
    """Which member call: the fields that name it (its deltas carry these too)."""

    model: str = Field(description="The model id asked (as configured).")
    instance: int = Field(description="1-based instance number of this model in the config.")
    iteration: int
    stage: Stage = "answer"

    @property
    def key(self) -> tuple[str, int]:
        """``(model, instance)``: which member this is."""
        return (self.model, self.instance)


class CallStats(Record):
    """How one model call was served: what a member call and a synthesis share."""

    latency_ms: float | None = None
    first_token_ms: float | None = None
    usage: Usage = Field(default_factory=Usage)
    served_by: str | None = Field(
        None, description="The model that actually answered (a fallback, maybe)."
    )
    cached: bool = False
    attempts: int = 1
    response_id: str | None = Field(None, description="The id of the response in llm's log.")
    cost: float | None = Field(None, description="Cost from the gateway's price table.")


class MemberRecord(CallStats, MemberCall):
    """One call of a member in one iteration (its answer, or a council peer review)."""

    status: MemberStatus = "done"
    text: str = Field("", description="The full reply (a failure's partial text).")
    answer: str = ""
    thought_process: str = ""
    reasoning: str = Field("", description="Reasoning the model streamed separately.")
    confidence: float | None = Field(None, description="Member's own confidence, None if unstated.")
    parse_warnings: list[str] = Field(
        default_factory=list, description="What the member-format parser had to guess."
    )
    error: str | None = Field(
        None,
        description="A failure's message (the model's own); for a truncated answer, why it "
        "was cut.",
    )
    error_type: str | None = Field(
        None,
        description="rate_limit, server_error, timeout, connection, malformed, auth, "
        "bad_request, context_window, empty, cut_off, quota, cooldown or error; a truncated "
        "answer's is 'length' (the model's own max-tokens) or 'cut_off' (our limits).",
    )
    truncated: bool = Field(
        False,
        description="The answer was cut by a limit (the model's max-tokens option, or the "
        "run-away guard's tokens or time) and is kept as far as it went.",
    )


TieBreak = Literal["confidence", "order"]
"""How a vote's tie for first place was broken: by the members' stated confidence, or (when
that ties too) by the config order of the first member who gave each answer."""


class VoteCount(BaseModel):
    """One distinct answer of a vote (``mode="vote"``) and who gave it."""

    answer: str = Field(description="The answer as its first voter (in config order) wrote it.")
    key: str = Field(description="The normalised form the votes were counted by.")
    count: int = Field(description="How many members gave this answer.")
    members: list[str] = Field(
        default_factory=list, description="The voters, as 'model#instance', in config order."
    )
    confidence: float = Field(
        0.0, description="The voters' stated confidence summed (unstated counts as 0)."
    )


class SynthesisRecord(CallStats):
    """The arbiter's (or chairman's) parsed decision for one iteration."""

    model: str = Field(description="The arbiter (or chairman) model asked.")
    iteration: int
    synthesis: str = ""
    confidence: float | None = None
    analysis: str = ""
    dissent: str = ""
    needs_iteration: bool = False
    refinement_areas: list[str] = Field(default_factory=list)
    ranking: list[int] = Field(default_factory=list)
    parse_ok: bool = True
    warnings: list[str] = Field(default_factory=list)
    raw: str = ""
    repairs: int = Field(
        0,
        description="Reformat requests sent because the arbiter's output could not be read "
        "(0 or 1); ``parse_ok`` says whether the answer to it could.",
    )
    votes: list[VoteCount] = Field(
        default_factory=list,
        description="Vote mode: every distinct answer with its count, the winner first "
        "(empty in the other modes).",
    )
    tie_break: TieBreak | None = Field(
        None, description="Vote mode: how a tie for first place was broken (None: no tie)."
    )
