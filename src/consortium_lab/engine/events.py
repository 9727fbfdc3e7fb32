"""The typed event stream of a consortium run.

Every run is one sequence of these events; the run log, the JSON export, the CLI printer and
the widget are all consumers of the same stream. Each event is a pydantic model with a ``kind``
string, so a stream serialises to JSON lines and parses back with :func:`parse_event`.

Schema version :data:`SCHEMA_VERSION` is bumped whenever a field is removed or changes meaning;
adding an optional field does not bump it. See ``docs/events.md``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, computed_field, model_validator

from consortium_lab.engine.records import MemberCall, MemberRecord, SynthesisRecord
from consortium_lab.gateway.types import Stage, Usage

__all__ = [
    "SCHEMA_VERSION",
    "ArbiterDelta",
    "Event",
    "IterationFinished",
    "IterationStarted",
    "MemberDelta",
    "MemberDone",
    "MemberFailed",
    "MemberQueued",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "Stage",
    "SynthesisReady",
    "Usage",
    "event_json_schema",
    "parse_event",
]

SCHEMA_VERSION = 1


_second: tuple[int, str] = (-1, "")
"""The last whole second formatted by :func:`iso_utc` and its text (a tuple: swapped as one)."""


def iso_utc(ns: int) -> str:
    """``isoformat()`` of the UTC datetime ``ns`` nanoseconds after 1970, microseconds floored
    (what ``datetime.now(UTC).isoformat()`` gives at ``time.time_ns()``).

    Every event carries one and a run streams hundreds of deltas; an aware datetime's
    ``isoformat()`` costs about three times this, which formats the date and time of day once
    per second.
    """
    global _second
    second = ns // 1_000_000_000
    cached, prefix = _second
    if cached != second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, prefix)
    micro = ns // 1000 % 1_000_000
    return f"{prefix}.{micro:06d}+00:00" if micro else prefix + "+00:00"


def _now() -> str:
    return iso_utc(time.time_ns())


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    at: str = Field(default_factory=_now, description="ISO-8601 UTC time the event was made.")
    schema_version: int = SCHEMA_VERSION


class RunStarted(_Event):
    """The run has begun; carries everything needed to reproduce it."""

    kind: Literal["run_started"] = "run_started"
    prompt: str
    config: dict[str, Any]
    conversation_id: str | None = None
    turn: int = 1
    branch_of: str | None = Field(
        None,
        description="The conversation this one branches from (an edited, regenerated or "
        "retried turn): its turns before this run's `turn` come first.",
    )


class IterationStarted(_Event):
    kind: Literal["iteration_started"] = "iteration_started"
    iteration: int


class MemberDelta(_Event, MemberCall):
    """A piece of a member's streamed text (``channel='reasoning'`` for separate reasoning)."""

    kind: Literal["member_delta"] = "member_delta"
    text: str
    channel: Literal["text", "reasoning"] = "text"
    restart: bool = Field(
        False,
        description="The answer starts over (a retry or fallback after a dropped stream): "
        "discard the text streamed so far for this member call.",
    )


class MemberQueued(_Event, MemberCall):
    """A member's call waits for its model (a sync-only local model takes one call at a time),
    or, with ``queued=False``, has stopped waiting and runs: its limits count from then."""

    kind: Literal["member_queued"] = "member_queued"
    queued: bool = True


class MemberDone(_Event, MemberRecord):
    """A member finished: its :class:`~consortium_lab.engine.records.MemberRecord` (full text,
    parsed parts, and how the call was served)."""

    kind: Literal["member_done"] = "member_done"
    status: Literal["done"] = "done"


class MemberFailed(_Event, MemberRecord):
    """A member failed: its record with ``error`` (the model's own message) and
    ``error_type``; ``text`` (also sent as ``partial_text``) is what it had streamed. The run
    goes on without it."""

    kind: Literal["member_failed"] = "member_failed"
    status: Literal["failed"] = "failed"
    error: str
    error_type: str

    @model_validator(mode="before")
    @classmethod
    def _partial_text_is_text(cls, data: Any) -> Any:
        # Schema 1 named a failure's text `partial_text`; it is the record's `text` now.
        if isinstance(data, dict) and "partial_text" in data:
            data = dict(data)
            partial = data.pop("partial_text")
            data.setdefault("text", partial)
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def partial_text(self) -> str:
        """The text streamed before the failure (``text``; kept for schema-1 readers)."""
        return self.text


class ArbiterDelta(_Event):
    kind: Literal["arbiter_delta"] = "arbiter_delta"
    model: str
    iteration: int
    text: str
    stage: Stage = "arbiter"
    restart: bool = Field(False, description="The synthesis starts over (see MemberDelta).")


class SynthesisReady(_Event, SynthesisRecord):
    """The arbiter's (or chairman's) parsed decision for one iteration: its
    :class:`~consortium_lab.engine.records.SynthesisRecord`."""

    kind: Literal["synthesis"] = "synthesis"


class IterationFinished(_Event):
    kind: Literal["iteration_finished"] = "iteration_finished"
    iteration: int
    confidence: float | None = None
    will_continue: bool = False


class RunFinished(_Event):
    kind: Literal["run_finished"] = "run_finished"
    iterations: int
    confidence: float | None = None
    status: Literal["completed", "completed_with_warnings", "cancelled"] = "completed"
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the run is 'completed_with_warnings' (an arbiter output that could "
        "not be read, iterations stopped early because of it).",
    )


class RunFailed(_Event):
    kind: Literal["run_failed"] = "run_failed"
    reason: str
    errors: dict[str, str] = Field(
        default_factory=dict,
        description="Each failure and its message: 'model#instance' for a member, "
        "'model (arbiter)' for the arbiter.",
    )


Event = Annotated[
    RunStarted
    | IterationStarted
    | MemberDelta
    | MemberQueued
    | MemberDone
    | MemberFailed
    | ArbiterDelta
    | SynthesisReady
    | IterationFinished
    | RunFinished
    | RunFailed,
    Field(discriminator="kind"),
]
"""Any event of the stream; discriminated by ``kind``."""

_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    """Parse one event from its dict or JSON form (as written by ``event.model_dump_json()``)."""
    if isinstance(data, (str, bytes)):
        return _adapter.validate_json(data)
    return _adapter.validate_python(data)


def event_json_schema() -> dict[str, Any]:
    """The JSON schema of the event stream as it is written (documented in
    ``docs/events.md``): serialization mode, so ``member_failed``'s ``partial_text`` is in it."""
    return _adapter.json_schema(mode="serialization")
