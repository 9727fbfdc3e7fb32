"""The rows of ``member_responses`` and ``arbiter_decisions``, derived from the records.

A member row is the :class:`~consortium_lab.engine.records.MemberRecord` flattened
(``usage`` spread into ``input_tokens``/``output_tokens``, lists as JSON text) plus ``run_id``
and ``created_at`` (the event's time); a decision row is the same for
:class:`~consortium_lab.engine.records.SynthesisRecord`. Nothing lists the fields a second
time: a field added to a record is written and read back here, once a migration adds its
column (``tests/test_store.py`` checks that every field has one).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from consortium_lab.engine.events import MemberDone, MemberFailed, SynthesisReady
from consortium_lab.engine.records import MemberRecord, Record, SynthesisRecord
from consortium_lab.sinks.runlog.connection import decode, encode

__all__ = [
    "DECISION_COLUMNS",
    "DECISION_JSON_COLUMNS",
    "MEMBER_COLUMNS",
    "MEMBER_JSON_COLUMNS",
    "decision_row",
    "member_row",
    "read_decision",
    "read_member",
]


def _json_fields(record: type[Record]) -> tuple[str, ...]:
    """The fields stored as JSON text: the lists."""
    return tuple(
        name
        for name, info in record.model_fields.items()
        if typing.get_origin(info.annotation) is list
        or (
            isinstance(info.annotation, types.UnionType)
            and any(typing.get_origin(a) is list for a in typing.get_args(info.annotation))
        )
    )


MEMBER_COLUMNS: tuple[str, ...] = ("run_id", *MemberRecord.flat_fields(), "created_at")
MEMBER_JSON_COLUMNS = _json_fields(MemberRecord)
DECISION_COLUMNS: tuple[str, ...] = ("run_id", *SynthesisRecord.flat_fields(), "created_at")
DECISION_JSON_COLUMNS = _json_fields(SynthesisRecord)


def _row(record: Record, json_columns: tuple[str, ...], run_id: str, at: str) -> dict[str, Any]:
    row = record.to_flat()
    for column in json_columns:
        row[column] = encode(row[column])
    return {"run_id": run_id, **row, "created_at": at}


def member_row(event: MemberDone | MemberFailed) -> dict[str, Any]:
    """The ``member_responses`` row of a member event."""
    return _row(MemberRecord.of(event), MEMBER_JSON_COLUMNS, event.run_id, event.at)


def decision_row(event: SynthesisReady) -> dict[str, Any]:
    """The ``arbiter_decisions`` row of a synthesis event."""
    return _row(SynthesisRecord.of(event), DECISION_JSON_COLUMNS, event.run_id, event.at)


def read_member(row: dict[str, Any]) -> MemberRecord:
    """The record a ``member_responses`` row holds (JSON columns decoded or not)."""
    return MemberRecord.from_flat(decode(dict(row), MEMBER_JSON_COLUMNS))


def read_decision(row: dict[str, Any]) -> SynthesisRecord:
    """The record an ``arbiter_decisions`` row holds (JSON columns decoded or not)."""
    return SynthesisRecord.from_flat(decode(dict(row), DECISION_JSON_COLUMNS))
