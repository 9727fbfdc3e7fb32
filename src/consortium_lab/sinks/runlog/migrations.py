"""The run log's schema history: every change to its tables is one migration here.

:data:`MIGRATIONS` is applied in order when a store opens, each once, inside one write
transaction, and recorded in ``schema_migrations`` (``version``, ``name``, ``applied_at``).
Add a change as a new function at the end (``@migration(version, name)``); never edit one
that has shipped: run logs in the field already applied it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import sqlite_utils

from consortium_lab.sinks.runlog.connection import utc_now

__all__ = ["MIGRATIONS", "RUN_STATUSES", "SCHEMA_VERSION", "RunStatus", "migrate", "pending"]

RunStatus = Literal[
    "running", "completed", "completed_with_warnings", "failed", "cancelled", "interrupted"
]
RUN_STATUSES: tuple[RunStatus, ...] = (
    "running",
    "completed",
    "completed_with_warnings",
    "failed",
    "cancelled",
    "interrupted",
)
_INITIAL_STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")
"""What schema 1 allowed: migration 1 must keep creating exactly that."""

Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[tuple[int, str, Migration]] = []
"""``(version, name, function)`` in the order they apply."""


def migration(version: int, name: str) -> Callable[[Migration], Migration]:
    """Append the decorated function to :data:`MIGRATIONS` as ``version``."""

    def add(function: Migration) -> Migration:
        if MIGRATIONS and version != MIGRATIONS[-1][0] + 1:
            raise ValueError(f"migration {version} {name!r} is out of order")
        MIGRATIONS.append((version, name, function))
        return function

    return add


@migration(1, "initial")
def _m001_initial(db: sqlite_utils.Database) -> None:
    statuses = ", ".join(f"'{s}'" for s in _INITIAL_STATUSES)
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            title TEXT,
            config TEXT
        )"""
    )
    db.execute(
        f"""
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            turn INTEGER NOT NULL DEFAULT 1,
            prompt TEXT NOT NULL,
            config TEXT,
            mode TEXT,
            arbiter TEXT,
            status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ({statuses})),
            started_at TEXT NOT NULL,
            finished_at TEXT,
            iteration_count INTEGER NOT NULL DEFAULT 0,
            final_confidence REAL,
            final_synthesis TEXT,
            error TEXT,
            owner_host TEXT,
            owner_pid INTEGER,
            owner_started_at TEXT,
            heartbeat_at TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS member_responses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            model TEXT NOT NULL,
            instance INTEGER NOT NULL,
            stage TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            text TEXT,
            answer TEXT,
            thought_process TEXT,
            reasoning TEXT,
            confidence REAL,
            latency_ms REAL,
            first_token_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            served_by TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            error TEXT,
            error_type TEXT,
            response_id TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS arbiter_decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            model TEXT NOT NULL,
            synthesis TEXT,
            confidence REAL,
            analysis TEXT,
            dissent TEXT,
            needs_iteration INTEGER NOT NULL DEFAULT 0,
            refinement_areas TEXT,
            ranking TEXT,
            parse_ok INTEGER NOT NULL DEFAULT 1,
            warnings TEXT,
            raw TEXT,
            latency_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            served_by TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            json TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )"""
    )
    for index in (
        "CREATE INDEX IF NOT EXISTS runs_conversation ON runs (conversation_id, turn)",
        "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
        "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",
        "CREATE INDEX IF NOT EXISTS member_responses_run ON member_responses (run_id, iteration)",
        "CREATE INDEX IF NOT EXISTS arbiter_decisions_run ON arbiter_decisions (run_id, iteration)",
    ):
        db.execute(index)


@migration(2, "records")
def _m002_records(db: sqlite_utils.Database) -> None:
    """The columns the member and synthesis records hold that schema 1 left out (``cost``,
    ``parse_warnings``; a synthesis's ``attempts``, ``first_token_ms``, ``response_id``),
    filled for recorded runs from their events, which always carried them."""
    for table, column, kind in (
        ("member_responses", "cost", "REAL"),
        ("member_responses", "parse_warnings", "TEXT"),
        ("arbiter_decisions", "attempts", "INTEGER NOT NULL DEFAULT 1"),
        ("arbiter_decisions", "first_token_ms", "REAL"),
        ("arbiter_decisions", "response_id", "TEXT"),
        ("arbiter_decisions", "cost", "REAL"),
    ):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    # One member call per (run, iteration, member, stage, outcome): its event is the one match.
    db.execute(
        """
        UPDATE member_responses SET
            cost = json_extract(e.json, '$.cost'),
            parse_warnings = coalesce(json_extract(e.json, '$.parse_warnings'), '[]')
        FROM events e
        WHERE e.run_id = member_responses.run_id
          AND e.kind = CASE member_responses.status
                       WHEN 'done' THEN 'member_done' ELSE 'member_failed' END
          AND json_extract(e.json, '$.iteration') = member_responses.iteration
          AND json_extract(e.json, '$.model') = member_responses.model
          AND json_extract(e.json, '$.instance') = member_responses.instance
          AND coalesce(json_extract(e.json, '$.stage'), 'answer') = member_responses.stage
        """
    )
    db.execute(
        """
        UPDATE arbiter_decisions SET
            attempts = coalesce(json_extract(e.json, '$.attempts'), 1),
            cost = json_extract(e.json, '$.cost')
        FROM events e
        WHERE e.run_id = arbiter_decisions.run_id AND e.kind = 'synthesis'
          AND json_extract(e.json, '$.iteration') = arbiter_decisions.iteration
        """
    )


@migration(3, "warnings")
def _m003_warnings(db: sqlite_utils.Database) -> None:
    """The run status ``completed_with_warnings`` (an arbiter output that could not be read),
    a member answer's ``truncated`` flag and a synthesis's ``repairs`` count.

    SQLite cannot alter a CHECK constraint: ``runs`` is rebuilt from its own SQL with the new
    status list, every row copied, its indexes made again. Nothing references ``runs`` by
    foreign key, so dropping the old table touches no other row.
    """
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'")
    old = "CHECK (status IN ({}))".format(", ".join(f"'{s}'" for s in _INITIAL_STATUSES))
    new = "CHECK (status IN ({}))".format(", ".join(f"'{s}'" for s in RUN_STATUSES))
    if old not in sql[0]:
        raise RuntimeError(f"runs: unexpected status constraint in {sql[0]!r}")
    indexes = [
        row[0]
        for row in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"
            " AND sql IS NOT NULL"
        )
    ]
    db.execute(sql[0].replace(old, new).replace("CREATE TABLE runs", "CREATE TABLE runs_new", 1))
    db.execute("INSERT INTO runs_new SELECT * FROM runs")
    db.execute("DROP TABLE runs")
    db.execute("ALTER TABLE runs_new RENAME TO runs")
    for index in indexes:
        db.execute(index)
    db.execute("ALTER TABLE member_responses ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE arbiter_decisions ADD COLUMN repairs INTEGER NOT NULL DEFAULT 0")


@migration(4, "votes")
def _m004_votes(db: sqlite_utils.Database) -> None:
    """A vote's tally (``votes``, JSON) and how its tie was broken (``tie_break``), kept with
    the decision that vote mode records in place of an arbiter's."""
    db.execute("ALTER TABLE arbiter_decisions ADD COLUMN votes TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE arbiter_decisions ADD COLUMN tie_break TEXT")


@migration(5, "evaluations")
def _m005_evaluations(db: sqlite_utils.Database) -> None:
    """An evaluation's own tables (see :mod:`consortium_lab.eval.store`): ``evaluations``
    (one row each, its ``tag`` groups its runs), ``eval_items`` (the items it asked) and
    ``eval_results`` (one row per item, condition and sample, with the ``run_id`` that
    answered; the primary key is what resuming skips)."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS evaluations (
            id TEXT PRIMARY KEY,
            tag TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
            dataset TEXT NOT NULL,
            scorer TEXT NOT NULL,
            samples INTEGER NOT NULL DEFAULT 1,
            conditions TEXT NOT NULL,
            settings TEXT NOT NULL,
            skipped INTEGER NOT NULL DEFAULT 0,
            notes TEXT NOT NULL DEFAULT '[]',
            owner_host TEXT,
            owner_pid INTEGER
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS eval_items (
            evaluation_id TEXT NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            item_id TEXT NOT NULL,
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            choices TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (evaluation_id, item_id)
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS eval_results (
            evaluation_id TEXT NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
            item_id TEXT NOT NULL,
            condition TEXT NOT NULL,
            sample INTEGER NOT NULL DEFAULT 0,
            run_id TEXT,
            answer TEXT NOT NULL DEFAULT '',
            extracted TEXT,
            correct INTEGER NOT NULL,
            latency_s REAL,
            tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            error TEXT,
            verdict TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (evaluation_id, item_id, condition, sample)
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS eval_results_run ON eval_results (run_id)")


SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The run log schema this code writes (unrelated to the event stream's ``SCHEMA_VERSION``)."""


def pending(applied: set[int]) -> bool:
    """Whether a file with migrations ``applied`` needs any of :data:`MIGRATIONS`."""
    return not {version for version, _, _ in MIGRATIONS} <= applied


def migrate(db: sqlite_utils.Database) -> list[int]:
    """Apply every migration ``db`` lacks (inside the caller's transaction); returns their
    versions."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
    applied = []
    for version, name, function in MIGRATIONS:
        if version in done:
            continue
        function(db)
        db.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            [version, name, utc_now()],
        )
        applied.append(version)
    return applied
