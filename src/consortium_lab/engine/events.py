"""The typed event stream of a consortium run.

Every run is one sequence of these events; the run log, the JSON export, the CLI printer and
the widget are all consumers of the same stream. Each event is a pydantic model with a ``kind``
string, so a stream serialises to JSON lines and parses back with :func:`parse_event`.

Schema version :data:`SCHEMA_VERSION` is bumped whenever a field is removed or changes meaning;
adding an optional field does not bump it. See ``docs/events.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from consortium_lab.gateway.types import Stage, Usage

SCHEMA_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat()


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


class IterationStarted(_Event):
    kind: Literal["iteration_started"] = "iteration_started"
    iteration: int


class _MemberEvent(_Event):
    model: str = Field(description="The model id asked (as configured).")
    instance: int = Field(description="1-based instance number of this model in the config.")
    iteration: int
    stage: Stage = "answer"


class MemberDelta(_MemberEvent):
    """A piece of a member's streamed text (``channel='reasoning'`` for separate reasoning)."""

    kind: Literal["member_delta"] = "member_delta"
    text: str
    channel: Literal["text", "reasoning"] = "text"
    restart: bool = Field(
        False,
        description="The answer starts over (a retry or fallback after a dropped stream): "
        "discard the text streamed so far for this member call.",
    )


class MemberDone(_MemberEvent):
    """A member finished: full text, parsed parts, and how the call was served."""

    kind: Literal["member_done"] = "member_done"
    text: str
    answer: str
    thought_process: str = ""
    reasoning: str = Field("", description="Reasoning the model streamed separately.")
    confidence: float | None = Field(None, description="Member's own confidence, None if unstated.")
    latency_ms: float
    first_token_ms: float | None = None
    usage: Usage = Field(default_factory=Usage)
    served_by: str = Field(description="The model that actually answered (a fallback, maybe).")
    cached: bool = False
    attempts: int = 1
    response_id: str | None = Field(None, description="The id of the response in llm's log.")
    cost: float | None = Field(None, description="Cost from the gateway's price table.")
    parse_warnings: list[str] = Field(
        default_factory=list, description="What the member-format parser had to guess."
    )


class MemberFailed(_MemberEvent):
    """A member failed; ``error`` is the model's own message. The run goes on without it."""

    kind: Literal["member_failed"] = "member_failed"
    error: str
    error_type: str = Field(
        description="rate_limit, server_error, timeout, connection, malformed, auth, "
        "bad_request, context_window, empty, cut_off, quota, cooldown or error."
    )
    partial_text: str = ""
    latency_ms: float | None = None
    served_by: str | None = None
    attempts: int = 1


class ArbiterDelta(_Event):
    kind: Literal["arbiter_delta"] = "arbiter_delta"
    model: str
    iteration: int
    text: str
    stage: Stage = "arbiter"
    restart: bool = Field(False, description="The synthesis starts over (see MemberDelta).")


class SynthesisReady(_Event):
    """The arbiter's (or chairman's) parsed decision for one iteration."""

    kind: Literal["synthesis"] = "synthesis"
    iteration: int
    model: str
    synthesis: str
    confidence: float | None
    analysis: str = ""
    dissent: str = ""
    needs_iteration: bool = False
    refinement_areas: list[str] = Field(default_factory=list)
    ranking: list[int] = Field(default_factory=list)
    parse_ok: bool = True
    warnings: list[str] = Field(default_factory=list)
    raw: str = ""
    latency_ms: float | None = None
    usage: Usage = Field(default_factory=Usage)
    served_by: str | None = None
    cached: bool = False
    attempts: int = 1
    cost: float | None = None


class IterationFinished(_Event):
    kind: Literal["iteration_finished"] = "iteration_finished"
    iteration: int
    confidence: float | None = None
    will_continue: bool = False


class RunFinished(_Event):
    kind: Literal["run_finished"] = "run_finished"
    iterations: int
    confidence: float | None = None
    status: Literal["completed", "cancelled"] = "completed"


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
    """The JSON schema of the event stream (documented in ``docs/events.md``)."""
    return _adapter.json_schema()
