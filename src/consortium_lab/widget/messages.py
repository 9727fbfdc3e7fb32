"""The custom messages between the chat widget's kernel side and its page: ONE schema.

These pydantic models are the source of the protocol. ``widgets/gen_messages.py`` writes them
out as a JSON schema (``widgets/messages.schema.json``) and as TypeScript types
(``widgets/src/messages.gen.ts``, with the ``ChatModel`` interface of the synced traitlets); a
Python test checks that both files are current and that every message the kernel sends
validates, and vitest checks the page's messages against the same schema.

Page -> kernel (:data:`FrontendMessage`; every one may carry ``req``, an id echoed back by the
``notice`` / ``estimate`` / ``download`` it causes)
    ``ready``, ``ask {prompt}``, ``cancel``, ``new_chat``, ``set_config {config, merge}``,
    ``save_config {name, config?}``, ``load_config {name}``, ``clone_config {source, target}``,
    ``remove_config {name}``, ``open_run {id}``, ``export {id, format}``, ``delete_run {id}``,
    ``estimate {prompt}``, ``recommend {prompt}``, ``resend {id, mode, prompt?}``,
    ``download_my_data``, ``delete_my_data {confirm}``.

Kernel -> page (:data:`KernelMessage`)
    ``events {seq, events}``, ``snapshot {run_id, streams}``, ``ready``,
    ``download {filename, mime, content}``, ``estimate {summary, calls, ...}``,
    ``recommendation {message, members, support, ...}`` and ``notice {level, message}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = [
    "FRONTEND_MESSAGE",
    "FRONTEND_TYPES",
    "KERNEL_MESSAGE",
    "KERNEL_TYPES",
    "Ask",
    "Cancel",
    "CloneConfig",
    "DeleteMyData",
    "DeleteRun",
    "Download",
    "DownloadMyData",
    "EstimateReply",
    "EstimateRequest",
    "Events",
    "Export",
    "FrontendMessage",
    "KernelMessage",
    "KernelReady",
    "LoadConfig",
    "NewChat",
    "Notice",
    "OpenRun",
    "Ready",
    "RecommendReply",
    "RecommendRequest",
    "RemoveConfig",
    "Resend",
    "SaveConfig",
    "SetConfig",
    "SetRetention",
    "Snapshot",
    "SnapshotStream",
    "StreamEvent",
]

Req = str | int | None
"""A request id chosen by the page, echoed back by the reply it causes."""


class _Message(BaseModel):
    # Unknown fields are refused: a typo on either side shows up in the tests, not as a
    # silently ignored field.
    model_config = ConfigDict(extra="forbid")


# -- page -> kernel -------------------------------------------------------------------------------


class Ready(_Message):
    """The view is rendered: send what it needs (models, configs, a live run's streams)."""

    type: Literal["ready"]
    req: Req = None


class Ask(_Message):
    """Run ``prompt`` as the next turn of the conversation."""

    type: Literal["ask"]
    prompt: str
    req: Req = None


class Cancel(_Message):
    """Stop the run in progress."""

    type: Literal["cancel"]
    req: Req = None


class NewChat(_Message):
    """Start a new conversation."""

    type: Literal["new_chat"]
    req: Req = None


class SetConfig(_Message):
    """Use ``config`` from the next prompt on; with ``merge``, only the fields given change
    (``member_options`` / ``member_system_prompts`` merge per member)."""

    type: Literal["set_config"]
    config: dict[str, Any]
    merge: bool = False
    req: Req = None


class SaveConfig(_Message):
    """Save the current config (or ``config``) under ``name``."""

    type: Literal["save_config"]
    name: str
    config: dict[str, Any] | None = None
    req: Req = None


class LoadConfig(_Message):
    """Use the saved config ``name``."""

    type: Literal["load_config"]
    name: str
    req: Req = None


class CloneConfig(_Message):
    """Save a copy of the saved config ``source`` as ``target``."""

    type: Literal["clone_config"]
    source: str
    target: str
    req: Req = None


class RemoveConfig(_Message):
    """Remove the saved config ``name``."""

    type: Literal["remove_config"]
    name: str
    req: Req = None


class OpenRun(_Message):
    """Show (and continue) the conversation of run ``id``."""

    type: Literal["open_run"]
    id: str
    req: Req = None


class Export(_Message):
    """Export run ``id``: answered by a ``download``."""

    type: Literal["export"]
    id: str
    format: Literal["json", "markdown"] = "json"
    req: Req = None


class DeleteRun(_Message):
    """Remove run ``id`` from the run log."""

    type: Literal["delete_run"]
    id: str
    req: Req = None


class EstimateRequest(_Message):
    """What asking ``prompt`` next can cost: answered by an ``estimate``."""

    type: Literal["estimate"]
    prompt: str
    req: Req = None


class RecommendRequest(_Message):
    """Which members did best on past prompts like ``prompt``: answered by a
    ``recommendation``."""

    type: Literal["recommend"]
    prompt: str
    req: Req = None


class Resend(_Message):
    """Ask run ``id``'s turn again on a new branch of the conversation, the old turn kept:
    ``regenerate`` (same prompt and settings, cache bypassed), ``retry`` (an interrupted or
    failed turn) or ``edit`` (``prompt`` instead of the turn's)."""

    type: Literal["resend"]
    id: str
    mode: Literal["regenerate", "retry", "edit"]
    prompt: str | None = None
    req: Req = None


class DownloadMyData(_Message):
    """Everything of this user's the chat keeps (every run, every saved config): answered by a
    ``download`` of one JSON file."""

    type: Literal["download_my_data"]
    req: Req = None


class SetRetention(_Message):
    """Keep this user's runs ``days`` days (``None``: as long as the site allows); the smaller
    of it and the operator's ``CONSORTIUM_LAB_RETENTION_DAYS`` applies. Answered by a
    ``notice`` and the ``retention`` trait."""

    type: Literal["set_retention"]
    days: int | None
    req: Req = None


class DeleteMyData(_Message):
    """Delete every run and saved config of this user (and, in a hub, what the gateway keeps
    of them); refused while a run is in progress. ``confirm`` is the user name as the user
    typed it (the widget's ``user_name``); anything else is refused."""

    type: Literal["delete_my_data"]
    confirm: str
    req: Req = None


FrontendMessage = Annotated[
    Ready
    | Ask
    | Cancel
    | NewChat
    | SetConfig
    | SaveConfig
    | LoadConfig
    | CloneConfig
    | RemoveConfig
    | OpenRun
    | Export
    | DeleteRun
    | EstimateRequest
    | RecommendRequest
    | Resend
    | DownloadMyData
    | DeleteMyData
    | SetRetention,
    Field(discriminator="type"),
]
"""Any message the page sends."""

FRONTEND_MESSAGE: TypeAdapter[FrontendMessage] = TypeAdapter(FrontendMessage)


def _by_type(union: Any) -> dict[str, type[BaseModel]]:
    members = get_args(get_args(union)[0])
    return {get_args(m.model_fields["type"].annotation)[0]: m for m in members}


FRONTEND_TYPES: dict[str, type[BaseModel]] = _by_type(FrontendMessage)
"""Each page message's ``type`` and its model."""


# -- kernel -> page -------------------------------------------------------------------------------


def _type_required(schema: dict[str, Any]) -> None:
    schema["required"] = ["type", *[f for f in schema.get("required", []) if f != "type"]]


class _KernelMessage(_Message):
    # Sent as ``model_dump(exclude_unset=True)``, so optional fields left out stay out; the
    # type is always sent (and required by the schema), though it has a default.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_type_required)

    @model_validator(mode="after")
    def _type_is_set(self) -> _KernelMessage:
        self.model_fields_set.add("type")
        return self


class StreamEvent(BaseModel):
    """One engine event as the page receives it: the event's fields (see
    ``docs/events.schema.json``) without ``schema_version``, and deltas without ``at``."""

    model_config = ConfigDict(extra="allow")

    kind: str
    run_id: str


class Events(_KernelMessage):
    """Events of the live run in stream order, deltas of one stream merged (at most
    ``MAX_MESSAGES_PER_SECOND`` such messages a second)."""

    type: Literal["events"] = "events"
    seq: int = Field(description="1, 2, ...: the order the kernel sent them in.")
    events: list[StreamEvent]


class SnapshotStream(_Message):
    """The text streamed so far on one stream of the live run."""

    kind: Literal["member_delta", "arbiter_delta"]
    model: str
    instance: int | None
    iteration: int
    stage: str | None
    channel: str
    text: str


class Snapshot(_KernelMessage):
    """The live run's streams so far, for a view that says ``ready`` mid-run."""

    type: Literal["snapshot"] = "snapshot"
    run_id: str | None
    streams: list[SnapshotStream]


class KernelReady(_KernelMessage):
    """The answer to ``ready``: the traits are current."""

    type: Literal["ready"] = "ready"


class Download(_KernelMessage):
    """A file for the page to save (the answer to ``export``)."""

    type: Literal["download"] = "download"
    filename: str
    mime: str
    content: str
    req: Req = None


class EstimateReply(_KernelMessage):
    """The answer to ``estimate``: ``summary`` is empty and ``error`` set when it could not be
    estimated."""

    type: Literal["estimate"] = "estimate"
    req: Req = None
    summary: str
    calls: int | None = None
    min_calls: int | None = None
    max_cost: float | None = None
    currency: str | None = None
    unpriced_models: list[str] = Field(default_factory=list)
    error: str | None = None


class RecommendReply(_KernelMessage):
    """The answer to ``recommend``: ``members`` is empty when there is not enough history (or
    ``error`` is set); ``message`` says which, in words."""

    type: Literal["recommendation"] = "recommendation"
    req: Req = None
    message: str
    members: list[str] = Field(default_factory=list, description="Model ids, best first.")
    support: int = Field(0, description="Similar past runs the suggestion rests on.")
    min_runs: int | None = None
    enough_history: bool = False
    error: str | None = None


class Notice(_KernelMessage):
    """A short message to show (a refused request names its ``req``)."""

    type: Literal["notice"] = "notice"
    level: Literal["info", "error"]
    message: str
    req: Req = None


KernelMessage = Annotated[
    Events | Snapshot | KernelReady | Download | EstimateReply | RecommendReply | Notice,
    Field(discriminator="type"),
]
"""Any message the kernel sends."""

KERNEL_MESSAGE: TypeAdapter[KernelMessage] = TypeAdapter(KernelMessage)

KERNEL_TYPES: dict[str, type[BaseModel]] = _by_type(KernelMessage)
"""Each kernel message's ``type`` and its model."""
