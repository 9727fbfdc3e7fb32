"""Recording a run: each event of the stream, in its own committed write transaction, so a
crash loses at most the member in flight."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlite_utils

from consortium_lab.config.consortium import ARBITERLESS_MODES
from consortium_lab.engine import events as ev
from consortium_lab.sinks.runlog.connection import encode, utc_now
from consortium_lab.sinks.runlog.liveness import Liveness
from consortium_lab.sinks.runlog.migrations import RunStatus
from consortium_lab.sinks.runlog.rows import decision_row, member_row

__all__ = ["TITLE_LENGTH", "Writer"]

logger = logging.getLogger(__name__)

TITLE_LENGTH = 80
"""Conversation titles are the first prompt cut to this many characters."""


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


def settle_conversation(db: Any, conversation_id: str) -> int:
    """After runs of ``conversation_id`` were deleted (``db``: a connection in the deleting
    transaction): drop the conversation when no run is left in it, returning 1; else retitle it
    from its earliest remaining run, returning 0, so that a deleted prompt does not live on as
    the title."""
    dropped = db.execute(
        "DELETE FROM conversations WHERE id = ?"
        " AND NOT EXISTS (SELECT 1 FROM runs WHERE conversation_id = ?)",
        [conversation_id, conversation_id],
    ).rowcount
    if dropped:
        return 1
    first = db.execute(
        "SELECT prompt FROM runs WHERE conversation_id = ? ORDER BY started_at, rowid LIMIT 1",
        [conversation_id],
    ).fetchone()
    if first is not None:
        db.execute(
            "UPDATE conversations SET title = ? WHERE id = ?", [_title(first[0]), conversation_id]
        )
    return 0


def _mode_and_arbiter(config: Mapping[str, Any]) -> tuple[str, str | None]:
    mode = str(config.get("mode") or "consortium")
    if mode in ARBITERLESS_MODES:
        return mode, None
    arbiter = config.get("arbiter")
    if isinstance(arbiter, Mapping):
        arbiter = arbiter.get("model")
    if not arbiter:
        models = config.get("models")
        if isinstance(models, Mapping) and models:
            arbiter = next(iter(models))
        elif isinstance(models, (list, tuple)) and models:
            arbiter = models[0]
    return mode, (str(arbiter) if arbiter else None)


class Writer(Liveness):
    """The recording part of the run log."""

    def record(self, event: ev.Event, *, strict: bool = False) -> bool:
        """Write one event in its own committed transaction; returns whether it was written.

        ``run_started`` inserts the conversation (when new) and the run with its owner;
        ``member_done``/``member_failed`` insert a member row; ``synthesis`` inserts the
        decision; ``run_finished``/``run_failed`` close the run. Every event but the deltas is
        appended to ``events``. Deltas are ignored (no I/O, returns False).

        The run log is a sink: by default a failure (a database error, a second
        ``run_started`` for a run already recorded) is logged as a warning and never reaches
        the run. ``strict=True`` raises it instead.
        """
        if isinstance(event, (ev.MemberDelta, ev.ArbiterDelta)):
            return False
        try:
            self._record(event)
        except Exception:
            if strict:
                raise
            logger.warning(
                "run log %s: could not record %s of run %s",
                self.path,
                event.kind,
                event.run_id,
                exc_info=True,
            )
            return False
        return True

    def record_many(self, events: Iterable[ev.Event], *, strict: bool = False) -> int:
        """:meth:`record` each event in order; returns how many were written."""
        return sum(self.record(event, strict=strict) for event in events)

    def _record(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._write(lambda db: self._record_run_started(db, event), what="run_started")
            with self._lock:
                self._active.add(event.run_id)
            self._ensure_heartbeat()
            return
        self._write(lambda db: self._record_event(db, event), what=event.kind)
        if isinstance(event, (ev.RunFinished, ev.RunFailed)):
            with self._lock:
                self._active.discard(event.run_id)

    def _record_run_started(self, db: sqlite_utils.Database, event: ev.RunStarted) -> None:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", [event.run_id]).fetchone():
            raise ValueError(f"run {event.run_id!r} is already in the run log")
        conversation_id = event.conversation_id or event.run_id
        db.execute(
            "INSERT OR IGNORE INTO conversations (id, created_at, title, config)"
            " VALUES (?, ?, ?, ?)",
            [conversation_id, event.at, _title(event.prompt), encode(event.config)],
        )
        mode, arbiter = _mode_and_arbiter(event.config)
        db.table("runs").insert(
            {
                "id": event.run_id,
                "conversation_id": conversation_id,
                "turn": event.turn,
                "prompt": event.prompt,
                "config": encode(event.config),
                "mode": mode,
                "arbiter": arbiter,
                "status": "running",
                "started_at": event.at,
                "iteration_count": 0,
                "owner_host": self._host,
                "owner_pid": self._pid,
                "owner_started_at": self._start_token,
                "heartbeat_at": utc_now(),
            }
        )
        self._append_event(db, event)

    def _record_event(self, db: sqlite_utils.Database, event: ev.Event) -> None:
        run_id = event.run_id
        if isinstance(event, ev.IterationStarted | ev.IterationFinished):
            db.execute(
                "UPDATE runs SET iteration_count = max(iteration_count, ?) WHERE id = ?",
                [event.iteration, run_id],
            )
        elif isinstance(event, ev.MemberDone | ev.MemberFailed):
            db.table("member_responses").insert(member_row(event))
        elif isinstance(event, ev.SynthesisReady):
            db.table("arbiter_decisions").insert(decision_row(event))
            # A vote's decision names no arbiter: the runs row keeps its arbiter NULL.
            db.execute(
                "UPDATE runs SET final_synthesis = ?, final_confidence = ?,"
                " iteration_count = max(iteration_count, ?), arbiter = coalesce(arbiter,"
                " CASE WHEN mode = 'vote' THEN NULL ELSE ? END) WHERE id = ?",
                [event.synthesis, event.confidence, event.iteration, event.model, run_id],
            )
        elif isinstance(event, ev.RunFinished):
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, iteration_count = ?,"
                " final_confidence = coalesce(?, final_confidence), error = NULL WHERE id = ?",
                [event.status, event.at, event.iterations, event.confidence, run_id],
            )
        elif isinstance(event, ev.RunFailed):
            db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                [event.at, event.reason, run_id],
            )
        if not isinstance(event, (ev.RunFinished, ev.RunFailed)):
            self._touch(db, [run_id])
        self._append_event(db, event)

    def _append_event(self, db: sqlite_utils.Database, event: ev.Event) -> None:
        row = db.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run_id = ?", [event.run_id]
        ).fetchone()
        db.execute(
            "INSERT INTO events (run_id, seq, kind, json) VALUES (?, ?, ?, ?)",
            [event.run_id, row[0], event.kind, event.model_dump_json()],
        )

    def close_run(self, run_id: str, status: RunStatus, *, error: str | None = None) -> bool:
        """Close a still-``running`` run with ``status`` (for a stream that stopped without a
        terminal event). Returns whether a run was changed; closed runs are left alone."""
        if status == "running":
            raise ValueError("close_run needs a final status, not 'running'")
        changed = self._write(
            lambda db: (
                db.execute(
                    "UPDATE runs SET status = ?, finished_at = ?, error = coalesce(?, error)"
                    " WHERE id = ? AND status = 'running'",
                    [status, utc_now(), error, run_id],
                ).rowcount
            ),
            what="close_run",
        )
        with self._lock:
            self._active.discard(run_id)
        return bool(changed)

    def delete_run(self, run_id: str) -> bool:
        """Remove every row of ``run_id``; drop its conversation if no run is left in it, else
        retitle it (:func:`settle_conversation`). Returns whether the run existed."""

        def delete(db: sqlite_utils.Database) -> bool:
            row = db.execute("SELECT conversation_id FROM runs WHERE id = ?", [run_id]).fetchone()
            for table in ("member_responses", "arbiter_decisions", "events"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            db.execute("DELETE FROM runs WHERE id = ?", [run_id])
            if row is not None:
                settle_conversation(db, row[0])
            return row is not None

        existed = self._write(delete, what="delete_run")
        with self._lock:
            self._active.discard(run_id)
        return existed
