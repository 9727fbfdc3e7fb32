"""Reading the run log back: runs, their events and records, conversations; and deleting a
run."""

from __future__ import annotations

from typing import Any

from consortium_lab.engine.events import Event, parse_event
from consortium_lab.engine.records import MemberRecord, SynthesisRecord
from consortium_lab.sinks.runlog.connection import Connection, decode
from consortium_lab.sinks.runlog.rows import (
    DECISION_JSON_COLUMNS,
    MEMBER_COLUMNS,
    MEMBER_JSON_COLUMNS,
    read_decision,
    read_member,
)

__all__ = ["FRAME_COLUMNS", "Reader"]

_RUN_JSON_COLUMNS = ("config",)

# A member row's run, as ``runs.to_pandas`` shows it: (column of runs, name in the frame).
_RUN_FRAME_COLUMNS = (
    ("conversation_id", "conversation_id"),
    ("turn", "turn"),
    ("prompt", "prompt"),
    ("mode", "mode"),
    ("arbiter", "arbiter"),
    ("status", "run_status"),
    ("started_at", "run_started_at"),
    ("finished_at", "run_finished_at"),
    ("iteration_count", "iteration_count"),
    ("final_confidence", "final_confidence"),
    ("error", "run_error"),
)
FRAME_COLUMNS: tuple[str, ...] = (
    "run_id",
    *(name for _, name in _RUN_FRAME_COLUMNS),
    *(c for c in MEMBER_COLUMNS if c != "run_id"),
)
"""The columns of :meth:`Reader.member_frame_rows` (and of ``runs.to_pandas()``)."""
_FRAME_SELECT = ", ".join(
    [
        "m.run_id",
        *(f"r.{c} AS {name}" for c, name in _RUN_FRAME_COLUMNS),
        *(f"m.{c}" for c in MEMBER_COLUMNS if c != "run_id"),
    ]
)


class Reader(Connection):
    """The reading part of the run log."""

    def list_runs(
        self,
        limit: int | None = None,
        conversation_id: str | None = None,
        tag: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``runs`` (``config`` decoded), newest first; optionally one conversation's,
        or the runs of the evaluation tagged ``tag``."""
        sql = "SELECT * FROM runs"
        where: list[str] = []
        params: list[Any] = []
        if conversation_id is not None:
            where.append("conversation_id = ?")
            params.append(conversation_id)
        if tag is not None:
            where.append(
                "id IN (SELECT r.run_id FROM eval_results r"
                " JOIN evaluations e ON e.id = r.evaluation_id WHERE e.tag = ?)"
            )
            params.append(tag)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [decode(row, _RUN_JSON_COLUMNS) for row in self._read(sql, params)]

    def get_run_row(self, run_id: str) -> dict[str, Any] | None:
        """The ``runs`` row of ``run_id`` (``config`` decoded), or None."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", [run_id])
        return decode(rows[0], _RUN_JSON_COLUMNS) if rows else None

    def get_events(self, run_id: str) -> list[Event]:
        """The recorded events of ``run_id`` in order (no deltas); empty if unknown."""
        rows = self._read("SELECT json FROM events WHERE run_id = ? ORDER BY seq", [run_id])
        return [parse_event(row["json"]) for row in rows]

    def member_responses(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``member_responses`` (one run's, or all) in recording order, JSON columns
        decoded."""
        if run_id is None:
            rows = self._read("SELECT * FROM member_responses ORDER BY id")
        else:
            rows = self._read(
                "SELECT * FROM member_responses WHERE run_id = ? ORDER BY id", [run_id]
            )
        return [decode(row, MEMBER_JSON_COLUMNS) for row in rows]

    def arbiter_decisions(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``arbiter_decisions`` (JSON columns decoded) in recording order."""
        if run_id is None:
            rows = self._read("SELECT * FROM arbiter_decisions ORDER BY id")
        else:
            rows = self._read(
                "SELECT * FROM arbiter_decisions WHERE run_id = ? ORDER BY id", [run_id]
            )
        return [decode(row, DECISION_JSON_COLUMNS) for row in rows]

    def member_records(self, run_id: str) -> list[MemberRecord]:
        """The member records of ``run_id`` as the run log holds them, in recording order."""
        return [read_member(row) for row in self.member_responses(run_id)]

    def synthesis_records(self, run_id: str) -> list[SynthesisRecord]:
        """The synthesis records of ``run_id`` as the run log holds them, in iteration order."""
        return [read_decision(row) for row in self.arbiter_decisions(run_id)]

    def member_frame_rows(self) -> list[dict[str, Any]]:
        """Every member response joined with its run's columns (for ``runs.to_pandas``):
        :data:`FRAME_COLUMNS`, JSON columns decoded."""
        rows = self._read(
            f"""
            SELECT {_FRAME_SELECT}
            FROM member_responses m LEFT JOIN runs r ON r.id = m.run_id
            ORDER BY r.started_at, m.run_id, m.id
            """
        )
        return [decode(row, MEMBER_JSON_COLUMNS) for row in rows]

    def answer_rows(self) -> list[dict[str, Any]]:
        """Every answer-stage member call of every finished run, with what a recommendation
        reads (``run_id``, ``prompt``, ``mode``, ``final_synthesis``, ``model``, ``instance``,
        ``iteration``, ``status``, ``answer``, ``text``, ``latency_ms``, ``cost``), runs in
        start order and each run's calls in recording order. Runs still running are left out."""
        return self._read(
            """
            SELECT r.id AS run_id, r.prompt, r.mode, r.final_synthesis,
                   m.model, m.instance, m.iteration, m.status, m.answer, m.text,
                   m.latency_ms, m.cost
            FROM runs r JOIN member_responses m ON m.run_id = r.id
            WHERE r.status != 'running' AND m.stage = 'answer'
            ORDER BY r.started_at, r.rowid, m.id
            """
        )

    def finished_runs_mark(self) -> tuple[int, str | None]:
        """How many runs are no longer running, and the latest one's end: a cheap check that
        the finished runs changed (one deleted and another finished changes it too)."""
        rows = self._read(
            "SELECT count(*) AS n, max(finished_at) AS last FROM runs WHERE status != 'running'"
        )
        return (int(rows[0]["n"]), rows[0]["last"])

    def conversation_history(
        self, conversation_id: str, before_turn: int | None = None
    ) -> dict[tuple[str, int], list[tuple[str, str]]]:
        """Each member's own history in a conversation.

        Maps ``(model, instance)`` to ``[(the turn's user prompt, that member's final
        successful answer text in that turn), ...]`` in turn order, for completed runs only (a
        failed, cancelled or interrupted turn adds nothing, as in a live conversation). A
        member's answer in a run is the full ``text`` of its last ``member_done`` of stage
        ``answer``; a turn where it has none is left out of its list. One member's answer never
        appears in another's. With ``before_turn``, only the turns before it count (the part a
        branch shares).
        """
        rows = self._read(
            """
            SELECT r.id AS run_id, r.prompt, m.model, m.instance, m.text
            FROM runs r
            JOIN member_responses m ON m.run_id = r.id
            WHERE r.conversation_id = ? AND r.status = 'completed'
              AND m.status = 'done' AND m.stage = 'answer' AND r.turn < ?
            ORDER BY r.turn, r.started_at, r.rowid, m.iteration, m.id
            """,
            [conversation_id, before_turn if before_turn is not None else 2**62],
        )
        # Rows come in run (turn) order; a later row of the same run and member replaces the
        # earlier one in place, so each key keeps its run's position.
        last: dict[tuple[str, str, int], tuple[str, str]] = {}
        for row in rows:
            last[(row["run_id"], row["model"], int(row["instance"]))] = (
                row["prompt"],
                row["text"] or "",
            )
        history: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for (_run_id, model, instance), turn in last.items():
            history.setdefault((model, instance), []).append(turn)
        return history

    def latest_conversation_id(self) -> str | None:
        """The conversation of the most recently started run (None when the log is empty)."""
        rows = self._read(
            "SELECT conversation_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1"
        )
        return rows[0]["conversation_id"] if rows else None

    def list_conversations(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Conversations, most recently active first, with ``run_count`` and ``last_run_at``."""
        sql = """
            SELECT c.id, c.created_at, c.title, c.config,
                   count(r.id) AS run_count, max(r.started_at) AS last_run_at
            FROM conversations c LEFT JOIN runs r ON r.conversation_id = c.id
            GROUP BY c.id
            ORDER BY coalesce(max(r.started_at), c.created_at) DESC, c.rowid DESC
        """
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [decode(row, _RUN_JSON_COLUMNS) for row in self._read(sql, params)]
