"""The per-user run log: a SQLite sink of the event stream.

:class:`RunStore` records every event of a run as it arrives (one committed write transaction
per event, so a crash loses at most the member in flight) and reads runs back. It never changes
a run: it only listens. The file is ``paths.runs_db_path()`` unless a path is given.

Its parts: :mod:`.connection` (WAL, write transactions, lock retries), :mod:`.migrations`
(the schema, one migration per change), :mod:`.rows` (the member and decision rows, derived
from the records), :mod:`.writer`, :mod:`.reader`, and :mod:`.liveness` (owners, the
heartbeat, crash recovery).

Tables
    ``schema_migrations``
        ``version`` (primary key), ``name``, ``applied_at``: one row per applied migration.
    ``conversations``
        ``id`` (primary key; the run id of its first run when the run gave none),
        ``created_at``, ``title`` (the first prompt, one line, truncated), ``config`` (JSON).
    ``runs``
        ``id`` (primary key), ``conversation_id``, ``turn``, ``prompt``, ``config`` (JSON),
        ``mode`` (``consortium``/``council``/``compare``), ``arbiter``, ``status`` (one of
        ``running``, ``completed``, ``failed``, ``cancelled``, ``interrupted``), ``started_at``,
        ``finished_at``, ``iteration_count``, ``final_confidence``, ``final_synthesis``,
        ``error``, ``owner_host``, ``owner_pid``, ``owner_started_at`` (process-start token:
        ``linux:<boot id>:<start time in clock ticks>``, NULL where unknown), ``heartbeat_at``.
    ``member_responses``
        One row per ``member_done`` / ``member_failed``: ``id`` (autoincrement), ``run_id``,
        ``iteration``, ``model``, ``instance``, ``stage``, ``status`` (``done``/``failed``),
        ``text`` (a failure's partial text), ``answer``, ``thought_process``, ``reasoning``,
        ``confidence``, ``latency_ms``, ``first_token_ms``, ``input_tokens``,
        ``output_tokens``, ``served_by``, ``cached``, ``attempts``, ``error``, ``error_type``,
        ``response_id``, ``created_at``; since schema 2 ``cost`` and ``parse_warnings`` (JSON):
        the fields of ``MemberRecord``.
    ``arbiter_decisions``
        One row per ``synthesis`` event: ``id``, ``run_id``, ``iteration``, ``model``,
        ``synthesis``, ``confidence``, ``analysis``, ``dissent``, ``needs_iteration``,
        ``refinement_areas`` (JSON), ``ranking`` (JSON), ``parse_ok``, ``warnings`` (JSON),
        ``raw``, ``latency_ms``, ``input_tokens``, ``output_tokens``, ``served_by``,
        ``cached``, ``created_at``; since schema 2 ``attempts``, ``first_token_ms``,
        ``response_id`` and ``cost``: the fields of ``SynthesisRecord``.
    ``events``
        ``run_id``, ``seq`` (1-based per run; primary key together), ``kind``, ``json`` (the
        event's ``model_dump_json()``). Every event except ``member_delta`` and
        ``arbiter_delta``, so folding a run's events rebuilds it exactly.

All times are ISO-8601 UTC strings (event times where an event gives one).
"""

from __future__ import annotations

from pathlib import Path

from consortium_lab import paths
from consortium_lab.sinks.runlog.liveness import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_STALE_AFTER
from consortium_lab.sinks.runlog.migrations import migrate, pending
from consortium_lab.sinks.runlog.reader import Reader
from consortium_lab.sinks.runlog.writer import Writer
from consortium_lab.sqlite import BUSY_TIMEOUT_S

__all__ = ["RunStore"]


class RunStore(Writer, Reader):
    """The run log at ``path`` (default :func:`consortium_lab.paths.runs_db_path`).

    Opening a store creates/migrates the schema and calls :meth:`recover_interrupted`. Record
    a run with :meth:`record` (the engine does, event by event); read it back
    with :meth:`list_runs`, :meth:`get_run_row`, :meth:`get_events` and friends.

    ``heartbeat_interval`` is how often (seconds) the timer thread refreshes the heartbeat of
    this process's running runs; ``stale_after`` is how old another host's heartbeat must be
    before its run counts as interrupted. ``recover=False`` skips recovery on open.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        stale_after: float = DEFAULT_STALE_AFTER,
        recover: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        super().__init__(
            Path(path) if path is not None else paths.runs_db_path(),
            busy_timeout=busy_timeout,
            heartbeat_interval=heartbeat_interval,
            stale_after=stale_after,
        )
        self._migrate()
        if recover:
            self.recover_interrupted()

    def _migrate(self) -> None:
        def applied() -> set[int]:
            exists = self._read(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
            if not exists:
                return set()
            return {r["version"] for r in self._read("SELECT version FROM schema_migrations")}

        # Reading first: a file already up to date is not locked for writing at every open.
        if pending(applied()):
            self._write(migrate, what="migrate")

    def schema_version(self) -> int:
        """The highest migration applied to this file."""
        rows = self._read("SELECT max(version) AS v FROM schema_migrations")
        return int(rows[0]["v"] or 0)

    def close(self) -> None:
        """Stop the heartbeat thread and close the connection (idempotent)."""
        self._stop_heartbeat()
        self._close_connection()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
