"""The ledger in one SQLite file (WAL mode): the default backend of a single gateway service."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consortium_lab.gateway.ledger.audit import AuditEntry
from consortium_lab.gateway.ledger.base import EntryKind, Ledger
from consortium_lab.gateway.ledger.usage import UsageFilter, UsageRecord

__all__ = ["SQLiteLedger"]

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_usage (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    user TEXT NOT NULL,
    model TEXT NOT NULL,
    served_by TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost REAL,
    cached INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    latency_ms REAL,
    stream INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS gateway_usage_time ON gateway_usage (time);
CREATE INDEX IF NOT EXISTS gateway_usage_user_time ON gateway_usage (user, time);
CREATE TABLE IF NOT EXISTS gateway_quotas (
    subject TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_acl (
    subject TEXT PRIMARY KEY,
    models TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_settings (
    subject TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_audit (
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS gateway_audit_no_update BEFORE UPDATE ON gateway_audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS gateway_audit_no_delete BEFORE DELETE ON gateway_audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS gateway_audit_seen (
    key TEXT PRIMARY KEY
);
"""

_USAGE_COLUMNS = (
    "time",
    "user",
    "model",
    "served_by",
    "input_tokens",
    "output_tokens",
    "cost",
    "cached",
    "outcome",
    "latency_ms",
    "stream",
)


_INSERT_USAGE = (
    f"INSERT INTO gateway_usage ({', '.join(_USAGE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _USAGE_COLUMNS)})"
)
_REVISION = "SELECT value FROM gateway_meta WHERE key = 'revision'"


_ENTRY_TABLES: dict[EntryKind, tuple[str, str]] = {
    "quotas": ("gateway_quotas", "policy"),
    "acl": ("gateway_acl", "models"),
    "settings": ("gateway_settings", "value"),
}
"""The table and JSON column of each kind of entry."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SQLiteLedger(Ledger):
    """The ledger in one SQLite file (WAL mode), written through sqlite-utils.

    Every write is one ``BEGIN IMMEDIATE`` transaction, so several processes may share the file
    (each waits up to ``timeout`` seconds for another's write). The quota counters live in the
    same file (:attr:`quota_storage` is ``sqlite:///<file>``).
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        import sqlite_utils

        super().__init__()
        self.path = Path(path).expanduser().absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._lock = threading.Lock()
        conn = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self.db = sqlite_utils.Database(conn)
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Switching to WAL needs the file alone for a moment: retry while another
                # process (a replica, the quota counters) opens it at the same time.
                self.db.enable_wal()
                conn.execute("PRAGMA synchronous=NORMAL")
                # Deleted and renamed usage (retention, a user's deletion) is overwritten with
                # zeros, not left readable in free pages.
                conn.execute("PRAGMA secure_delete=ON")
                conn.executescript(_SQLITE_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.quota_storage = f"sqlite:///{self.path}"
        # A second connection for revision_nowait(): a WAL reader never waits for a writer,
        # and it fails at once (timeout 0) rather than wait for anything else.
        self._reader = sqlite3.connect(
            str(self.path), timeout=0, isolation_level=None, check_same_thread=False
        )
        self._reader_lock = threading.Lock()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction, rolled back when the block raises."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    def record_many(self, records: Sequence[UsageRecord]) -> None:
        rows = [
            (
                r.time,
                r.user,
                r.model,
                r.served_by,
                r.input_tokens,
                r.output_tokens,
                r.cost,
                int(r.cached),
                r.outcome,
                r.latency_ms,
                int(r.stream),
            )
            for r in records
        ]
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(_INSERT_USAGE, rows)

    def _select(self, where: UsageFilter, limit: int) -> list[UsageRecord]:
        clause, params = where.where()
        rows = self._rows(
            f"SELECT {', '.join(_USAGE_COLUMNS)} FROM gateway_usage{clause}"
            " ORDER BY time DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [
            UsageRecord(**{**r, "cached": bool(r["cached"]), "stream": bool(r["stream"])})
            for r in rows
        ]

    def _aggregate(self, where: UsageFilter, fields: list[str]) -> list[dict[str, Any]]:
        exprs = {f: ("date(time, 'unixepoch')" if f == "day" else f) for f in fields}
        select = [f"{expr} AS {name}" for name, expr in exprs.items()]
        clause, params = where.where()
        group = f" GROUP BY {', '.join(exprs.values())}" if fields else ""
        order = f" ORDER BY {', '.join(exprs.values())}" if fields else ""
        sql = (
            f"SELECT {', '.join([*select, ''])}"
            "COUNT(*) AS calls,"
            " SUM(outcome = 'ok') AS ok,"
            " SUM(outcome != 'ok') AS failed,"
            " SUM(cached) AS cached,"
            " COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            " SUM(cost) AS cost,"
            " AVG(CASE WHEN outcome = 'ok' AND NOT cached THEN latency_ms END) AS latency_ms_avg"
            f" FROM gateway_usage{clause}{group}{order}"
        )
        rows = self._rows(sql, params)
        if not fields and rows and rows[0]["calls"] == 0:
            return []
        for row in rows:
            for name in ("ok", "failed", "cached"):
                row[name] = int(row[name] or 0)
        return rows

    def _entries(self, kind: EntryKind) -> dict[str, str]:
        table, column = _ENTRY_TABLES[kind]
        rows = self._rows(f"SELECT subject, {column} AS value FROM {table}")
        return {r["subject"]: r["value"] for r in rows}

    def _set_entry(self, kind: EntryKind, subject: str, value: str | None) -> None:
        table, column = _ENTRY_TABLES[kind]
        with self._transaction() as conn:
            if value is None:
                conn.execute(f"DELETE FROM {table} WHERE subject = ?", [subject])
            else:
                conn.execute(
                    f"INSERT INTO {table} (subject, {column}, updated_at) VALUES (?, ?, ?)"
                    f" ON CONFLICT (subject) DO UPDATE SET {column} = excluded.{column},"
                    " updated_at = excluded.updated_at",
                    [subject, value, _now_iso()],
                )
            conn.execute(
                "INSERT INTO gateway_meta (key, value) VALUES ('revision', 1)"
                " ON CONFLICT (key) DO UPDATE SET value = value + 1"
            )

    def _purge_usage(self, before: float) -> int:
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM gateway_usage WHERE time < ?", [before]).rowcount
        if deleted:
            # Deleted rows stay in the file's free pages and in the WAL until both are
            # rewritten: VACUUM the file, then truncate the WAL.
            with self._lock:
                self.db.conn.execute("VACUUM")
                self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def _rename_user(self, user: str, alias: str) -> int:
        with self._transaction() as conn:
            changed = conn.execute(
                "UPDATE gateway_usage SET user = ? WHERE user = ?", [alias, user]
            ).rowcount
        with self._lock:
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(changed)

    def _append_audit(self, make: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT entry FROM gateway_audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            entry = make(AuditEntry.from_json(row[0]) if row else None)
            conn.execute(
                "INSERT INTO gateway_audit (seq, entry) VALUES (?, ?)", [entry.seq, entry.to_json()]
            )
        return entry

    def _first_seen(self, key: str) -> bool:
        with self._transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO gateway_audit_seen (key) VALUES (?)", [key]
            ).rowcount
        return bool(inserted)

    def audit_entries(self, *, after: int = 0, limit: int | None = None) -> list[AuditEntry]:
        rows = self._rows(
            "SELECT entry FROM gateway_audit WHERE seq > ? ORDER BY seq LIMIT ?",
            [after, -1 if limit is None else int(limit)],
        )
        return [AuditEntry.from_json(r["entry"]) for r in rows]

    def revision(self) -> int:
        rows = self._rows(_REVISION)
        return int(rows[0]["value"]) if rows else 0

    def revision_nowait(self) -> int | None:
        if not self._reader_lock.acquire(blocking=False):
            return None
        try:
            row = self._reader.execute(_REVISION).fetchone()
        except sqlite3.Error:
            return None
        finally:
            self._reader_lock.release()
        return int(row[0]) if row else 0

    def check(self) -> bool:
        try:
            self._rows("SELECT 1 AS one")
        except sqlite3.Error:
            return False
        return True

    def _disconnect(self) -> None:
        with self._reader_lock:
            self._reader.close()
        with self._lock:
            self.db.conn.close()
