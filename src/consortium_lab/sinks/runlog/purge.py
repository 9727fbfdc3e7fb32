"""Run-log retention: delete old runs (or all) and their rows in llm's log, for good.

:func:`purge` removes the runs it is asked to remove, their member and arbiter rows, their
events, conversations left without a run, and the rows of llm's ``logs.db`` that only those runs
referenced (by the run log's ``response_id``). Deleted text is gone from the files, not only
unlinked: ``secure_delete`` zeroes freed pages, the WAL is checkpointed and truncated, llm's
full-text index is merged (``optimize``) so no deleted token lingers in an old segment, and
``VACUUM`` rewrites each file. A dry run only counts.

The operator's maximum is ``CONSORTIUM_LAB_RETENTION_DAYS`` (the spawner's environment); a user
may choose fewer days; :func:`effective_retention_days` takes the smaller.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consortium_lab.sinks.runlog.llm_log_purge import (
    chunks,
    count_responses,
    delete_responses,
    merge_fts,
    sql_in,
)
from consortium_lab.sinks.runlog.writer import settle_conversation
from consortium_lab.sqlite import BUSY_TIMEOUT_S, with_lock_retry

__all__ = [
    "RETENTION_ENV",
    "NotARunLogError",
    "PurgeReport",
    "check_run_log",
    "effective_retention_days",
    "parse_days",
    "purge",
]

RETENTION_ENV = "CONSORTIUM_LAB_RETENTION_DAYS"
"""The operator's maximum number of days a run is kept (unset: kept until deleted)."""

_RUN_TABLES = ("member_responses", "arbiter_decisions", "events")
_REFERENCING = ("member_responses", "arbiter_decisions")


class NotARunLogError(ValueError):
    """The file given to :func:`purge` is missing or is not a consortium_lab run log."""


@dataclass(frozen=True)
class PurgeReport:
    """What a purge removed (or, for a dry run, would remove)."""

    path: Path
    runs: int
    conversations: int
    llm_responses: int
    dry_run: bool
    bytes_before: int
    bytes_after: int


def parse_days(value: object, *, what: str = "retention") -> int:
    """``value`` as a whole number of days, at least 1; otherwise a ``ValueError`` that names
    ``what`` and the value (0, negative, fractional and non-numeric values are refused)."""
    text = str(value).strip()
    try:
        days = int(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number of days, got {text!r}") from None
    if days < 1:
        raise ValueError(f"{what} must be at least 1 day, got {days}")
    return days


def effective_retention_days(user_days: int | None = None) -> int | None:
    """How many days runs are kept: the smaller of the operator's ``CONSORTIUM_LAB_RETENTION_DAYS``
    and ``user_days``; ``None`` when neither is set. A malformed variable raises ``ValueError``
    naming it."""
    candidates: list[int] = []
    env = os.environ.get(RETENTION_ENV, "").strip()
    if env:
        candidates.append(parse_days(env, what=RETENTION_ENV))
    if user_days is not None:
        candidates.append(parse_days(user_days, what="the chosen retention"))
    return min(candidates) if candidates else None


def check_run_log(path: Path) -> None:
    """Raise :class:`NotARunLogError` unless ``path`` is an existing run log. It is opened
    read-only, so a wrong file is never created, migrated or changed."""
    if not path.is_file():
        raise NotARunLogError(f"{path}: no such run log")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise NotARunLogError(f"{path}: not a run log ({exc})") from None
    missing = {"runs", "schema_migrations", *_RUN_TABLES} - names
    if missing:
        raise NotARunLogError(f"{path}: not a run log (no {', '.join(sorted(missing))} table)")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: VACUUM cannot run inside a transaction; writes open their own.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def _compact(conn: sqlite3.Connection) -> None:
    """Rewrite the file without the freed pages and leave no deleted text in the WAL."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with_lock_retry(lambda: conn.execute("VACUUM"), what="vacuum")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _selected(conn: sqlite3.Connection, cutoff: str | None) -> list[str]:
    # A run still being written is never purged: its process would write into a hole.
    sql = "SELECT id FROM runs WHERE status != 'running'"
    params: list[str] = []
    if cutoff is not None:
        sql += " AND started_at < ?"
        params.append(cutoff)
    return [row[0] for row in conn.execute(sql, params)]


def _orphaned_responses(conn: sqlite3.Connection, run_ids: Sequence[str]) -> list[str]:
    """The llm response ids referenced by ``run_ids`` and by no other run (a cached answer is
    shared by every run that reused it)."""
    gone = set(run_ids)
    ids: dict[str, bool] = {}
    for table in _REFERENCING:
        for rid, run_id in conn.execute(
            f"SELECT response_id, run_id FROM {table} WHERE response_id IS NOT NULL"
        ):
            ids[rid] = ids.get(rid, True) and run_id in gone
    return sorted(rid for rid, only_gone in ids.items() if only_gone)


def _delete_runs(conn: sqlite3.Connection, run_ids: Sequence[str]) -> int:
    conversations: set[str] = set()
    for chunk in chunks(run_ids):
        conversations.update(
            row[0]
            for row in conn.execute(
                f"SELECT conversation_id FROM runs WHERE id {sql_in(chunk)}", chunk
            )
        )
        for table in _RUN_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE run_id {sql_in(chunk)}", chunk)
        conn.execute(f"DELETE FROM runs WHERE id {sql_in(chunk)}", chunk)
    # A kept conversation is retitled: its title was the first prompt, maybe one purged here.
    return sum(settle_conversation(conn, c) for c in sorted(conversations))


def _purge_llm_log(path: Path, response_ids: Sequence[str], *, dry_run: bool) -> int:
    """Delete ``response_ids`` from llm's log at ``path`` with every row only they used."""
    if not response_ids or not path.is_file():
        return 0
    conn = _connect(path)
    try:
        present = count_responses(conn, response_ids)
        if dry_run or not present:
            return present

        def delete() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                delete_responses(conn, response_ids)
                merge_fts(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with_lock_retry(delete, what=f"purge llm log {path}")
        _compact(conn)
        return present
    finally:
        conn.close()


def purge(
    path: str | Path,
    *,
    older_than_days: int | None = None,
    everything: bool = False,
    dry_run: bool = False,
    llm_log: str | Path | None = None,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete the runs of the run log at ``path`` that started more than ``older_than_days``
    days before ``now`` (or every finished run with ``everything=True``; exactly one of the two
    is required), with their rows in llm's log at ``llm_log`` that no kept run references.

    ``dry_run`` counts without changing anything. Running runs are kept. Raises
    :class:`NotARunLogError` for a missing file or one that is not a run log, and
    ``ValueError`` for a bad number of days.
    """
    if everything == (older_than_days is not None):
        raise ValueError("purge needs either older_than_days or everything=True, not both")
    db_path = Path(path)
    check_run_log(db_path)
    cutoff = None
    if older_than_days is not None:
        days = parse_days(older_than_days, what="older_than_days")
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=days)).astimezone(UTC).isoformat()
    before = _size(db_path)
    conn = _connect(db_path)
    try:
        run_ids = _selected(conn, cutoff)
        response_ids = _orphaned_responses(conn, run_ids)
        if dry_run or not run_ids:
            conversations = _countable_conversations(conn, run_ids)
        else:

            def delete() -> int:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Chosen again under the write lock: a run may have started meanwhile.
                    nonlocal run_ids, response_ids
                    run_ids = _selected(conn, cutoff)
                    response_ids = _orphaned_responses(conn, run_ids)
                    dropped = _delete_runs(conn, run_ids)
                    conn.execute("COMMIT")
                    return dropped
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

            conversations = with_lock_retry(delete, what=f"purge {db_path}")
            _compact(conn)
    finally:
        conn.close()
    llm_path = Path(llm_log) if llm_log is not None else None
    llm_rows = (
        _purge_llm_log(llm_path, response_ids, dry_run=dry_run) if llm_path is not None else 0
    )
    return PurgeReport(
        path=db_path,
        runs=len(run_ids),
        conversations=conversations,
        llm_responses=llm_rows,
        dry_run=dry_run,
        bytes_before=before,
        bytes_after=_size(db_path),
    )


def _countable_conversations(conn: sqlite3.Connection, run_ids: Sequence[str]) -> int:
    """How many conversations deleting ``run_ids`` would leave empty."""
    gone = set(run_ids)
    remaining: dict[str, bool] = {}
    for conversation, run_id in conn.execute("SELECT conversation_id, id FROM runs"):
        remaining[conversation] = remaining.get(conversation, True) and run_id in gone
    return sum(
        1
        for conversation, empty in remaining.items()
        if empty
        and conn.execute("SELECT 1 FROM conversations WHERE id = ?", [conversation]).fetchone()
    )
