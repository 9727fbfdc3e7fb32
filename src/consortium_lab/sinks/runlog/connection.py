"""The run log's SQLite connection: WAL mode, one write transaction per action, lock retries.

The database is in WAL mode; every write transaction starts with ``BEGIN IMMEDIATE`` so a
concurrent writer waits (``busy_timeout``) instead of failing, and a bounded retry
(:func:`consortium_lab.sqlite.with_lock_retry`) covers the rare "database is locked" that still
gets through. One store may be shared by the threads of one process (a lock serialises its
connection); several processes may open the same file at once. A store must not be shared
across ``fork()``: a child process reopens its own connection on first use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from consortium_lab.sqlite import with_lock_retry

__all__ = ["Connection", "decode", "encode", "utc_now"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def utc_now() -> str:
    """Now, as the run log writes times: ISO-8601 UTC."""
    return datetime.now(UTC).isoformat()


def encode(value: Any) -> str:
    """A JSON column's text."""
    return json.dumps(value, ensure_ascii=False, default=str)


def decode(row: dict[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """``row`` with its JSON ``columns`` parsed (a value that is not JSON is left as text)."""
    for column in columns:
        value = row.get(column)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[column] = json.loads(value)
    return row


class Connection:
    """One process's connection to the run log file at ``path``."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._closed = False
        self._pid = os.getpid()
        self._db = self._open()

    def _open(self) -> sqlite_utils.Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        db = sqlite_utils.Database(conn)

        def wal() -> None:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                logger.warning("run log %s: could not switch to WAL (got %r)", self.path, mode)

        with_lock_retry(wal, what="enable WAL")
        # WAL + NORMAL is durable across process crashes; only an OS crash can lose the last
        # commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        return db

    def _forked(self) -> None:
        """Forget the parent's connection in a forked child (subclasses forget more)."""
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._db = self._open()

    @property
    def db(self) -> sqlite_utils.Database:
        """The underlying sqlite-utils database (reopened after a ``fork()``)."""
        if self._closed:
            raise RuntimeError(f"run log {self.path} is closed")
        if os.getpid() != self._pid:
            # A forked child must not use its parent's connection, nor own its parent's runs.
            self._forked()
        return self._db

    def _write(self, action: Callable[[sqlite_utils.Database], _T], *, what: str) -> _T:
        """Run ``action`` in one ``BEGIN IMMEDIATE`` transaction, retrying while locked."""

        def attempt() -> _T:
            with self._lock:
                db = self.db
                if db.conn.in_transaction:  # never commit someone's leftover transaction
                    db.rollback()
                db.conn.execute("BEGIN IMMEDIATE")
                try:
                    result = action(db)
                except BaseException:
                    db.rollback()
                    raise
                db.conn.commit()
                return result

        return with_lock_retry(attempt, what=what)

    def _read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            with self._lock:
                cursor = self.db.conn.execute(sql, params)
                columns = [d[0] for d in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

        return with_lock_retry(attempt, what="read")

    def _close_connection(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
