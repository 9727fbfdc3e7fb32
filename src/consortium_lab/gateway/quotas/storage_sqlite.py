"""``sqlite:///file.db`` quota counters: the ``limits`` storage that ``limits`` does not have.

A single gateway service keeps its users' quotas across restarts and deploys in one SQLite file,
with nothing to run beside it (see :func:`sqlite_storage_class`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from limits.storage import Storage

INSTALL_HINT = (
    "quotas need the 'limits' package, a dependency of consortium-lab: "
    "reinstall it with `pip install consortium-lab`"
)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS limits_counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS limits_counters_expires_at ON limits_counters (expires_at);
"""

_INCR = """
INSERT INTO limits_counters (key, value, expires_at) VALUES (:key, :amount, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN expires_at <= :now THEN excluded.value ELSE value + excluded.value END,
    expires_at = CASE WHEN expires_at <= :now THEN excluded.expires_at ELSE expires_at END
"""


def sqlite_path(uri: str) -> str:
    """The file of a ``sqlite:`` storage URI, SQLAlchemy style.

    ``sqlite:///quotas.db`` is relative to the working directory, ``sqlite:////var/lib/x.db``
    is absolute (so ``f"sqlite:///{path}"`` is right for either kind of ``path``). A ``~`` is
    expanded; a query string (``?...``) is ignored.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        raise ValueError(
            f"SQLite storage URI must look like sqlite:///relative.db or "
            f"sqlite:////absolute/path.db (got {uri!r})"
        )
    path = urllib.parse.unquote(uri[len(prefix) :].partition("?")[0])
    if not path or path == ":memory:":
        raise ValueError(
            f"SQLite storage needs a file (got {uri!r}); for counters in this process only "
            "use memory://"
        )
    return str(Path(path).expanduser())


class SQLiteCounters:
    """Fixed-window counters with expiry in one SQLite file (the body of ``SQLiteStorage``).

    One row per key: ``(key, value, expires_at)``. ``incr`` is one ``INSERT … ON CONFLICT DO
    UPDATE`` inside ``BEGIN IMMEDIATE``, which takes the database's write lock, so increments
    from any number of threads and processes are serialised and none is lost; a row past its
    ``expires_at`` counts as absent (its next ``incr`` starts it again) and expired rows are
    deleted now and then. The file is in WAL mode (readers never wait for the writer) with
    ``synchronous=NORMAL``: a committed increment survives the process crashing or being
    restarted (only a power loss can drop the last few). Each process opens its own
    connection (one shared by its threads under a lock; a forked child opens a new one) and
    waits up to ``timeout`` seconds for another process's write lock.
    """

    path: str
    timeout: float
    _guard: threading.Lock
    _conn: sqlite3.Connection | None
    _pid: int
    _writes: int
    _inherited: list[sqlite3.Connection]
    _time: Callable[[], float]

    CLEANUP_EVERY = 256
    """Delete expired rows every this many increments (and when the file is opened)."""

    def _setup(self, uri: str | None, options: Mapping[str, Any]) -> None:
        self.path = sqlite_path(uri or "")
        self.timeout = float(options.get("timeout", 30.0))
        self._guard = threading.Lock()
        self._conn = None
        self._pid = 0
        self._writes = 0
        self._inherited = []
        self._time = time.time
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._guard:
            self._connection()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """What ``limits`` wraps in ``StorageError`` when asked to (``wrap_exceptions``)."""
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        if self._conn is not None:
            # Inherited through fork: never use it here, and never close it either (that could
            # release locks its parent holds); keep it referenced so it is not collected.
            self._inherited.append(self._conn)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                # Switching to WAL needs a moment alone with the file and can fail at once with
                # "database is locked" while another process opens it: retry until the timeout.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                conn.execute("DELETE FROM limits_counters WHERE expires_at <= ?", (self._time(),))
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    conn.close()
                    raise
                if time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.01)
        self._conn, self._pid = conn, pid
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction's connection (see :meth:`transaction`)."""
        with self.transaction() as txn:
            yield txn.conn

    def _read(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._guard:
            row = self._connection().execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        """Several counter operations in one write transaction (one ``BEGIN IMMEDIATE``):
        atomic together, and far cheaper than a transaction each. Rolled back as a whole when
        the block raises."""
        with self._guard:
            conn = self._connection()
            txn = SQLiteTransaction(self, conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield txn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                txn.rolled_back()
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                txn.rolled_back()
                raise

    def _incr(self, conn: sqlite3.Connection, key: str, expiry: int, amount: int) -> int:
        now = self._time()
        conn.execute(_INCR, {"key": key, "amount": amount, "expires_at": now + expiry, "now": now})
        value = conn.execute("SELECT value FROM limits_counters WHERE key = ?", (key,)).fetchone()[
            0
        ]
        self._writes += 1
        if self._writes % self.CLEANUP_EVERY == 0:
            conn.execute("DELETE FROM limits_counters WHERE expires_at <= ?", (now,))
        return int(value)

    def _decr(self, conn: sqlite3.Connection, key: str, amount: int) -> int:
        now = self._time()
        conn.execute(
            "UPDATE limits_counters SET value = MAX(value - ?, 0) WHERE key = ? AND expires_at > ?",
            (amount, key, now),
        )
        row = conn.execute(
            "SELECT value FROM limits_counters WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _get(self, conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute(
            "SELECT value FROM limits_counters WHERE key = ? AND expires_at > ?",
            (key, self._time()),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s counter; a new (or expired) one lives ``expiry`` s."""
        with self._write() as conn:
            return self._incr(conn, key, expiry, amount)

    def decr(self, key: str, amount: int = 1) -> int:
        """Take ``amount`` off ``key``'s counter (never below 0)."""
        with self._write() as conn:
            return self._decr(conn, key, amount)

    def get(self, key: str) -> int:
        """The counter of ``key`` (0 when absent or expired)."""
        with self._guard:
            return self._get(self._connection(), key)

    def get_expiry(self, key: str) -> float:
        """When ``key``'s counter expires (now, when it does not exist)."""
        now = self._time()
        value = self._read(
            "SELECT expires_at FROM limits_counters WHERE key = ? AND expires_at > ?", (key, now)
        )
        return now if value is None else float(value)

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            self._read("SELECT 1", ())
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Delete every counter; returns how many there were."""
        with self._write() as conn:
            return conn.execute("DELETE FROM limits_counters").rowcount

    def clear(self, key: str) -> None:
        """Delete ``key``'s counter."""
        with self._write() as conn:
            conn.execute("DELETE FROM limits_counters WHERE key = ?", (key,))

    def close(self) -> None:
        """Close this process's connection (it is opened again when needed)."""
        with self._guard:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


class SQLiteTransaction:
    """The counters of :meth:`SQLiteCounters.transaction`, inside its one transaction."""

    def __init__(self, counters: SQLiteCounters, conn: sqlite3.Connection) -> None:
        self._counters = counters
        self.conn = conn
        self._undo: list[Callable[[], None]] = []

    def get(self, key: str) -> int:
        return self._counters._get(self.conn, key)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._counters._incr(self.conn, key, expiry, amount)

    def decr(self, key: str, amount: int = 1) -> int:
        return self._counters._decr(self.conn, key, amount)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` if the transaction is rolled back."""
        self._undo.append(callback)

    def rolled_back(self) -> None:
        for callback in self._undo:
            callback()


@functools.cache
def sqlite_storage_class() -> type[Storage]:
    """The ``limits`` storage for ``sqlite:///path.db`` URIs, registered with ``limits``.

    ``limits`` stores counters in memory, Redis, Memcached, MongoDB or Valkey, but not in a
    file. The gateway service runs as one process (or a few on one host) and must keep users'
    daily quotas across restarts and deploys; a SQLite file does that with nothing to run
    beside it. The class is a proper ``limits.storage.Storage`` for the fixed-window strategy
    (``incr``/``get``/``get_expiry``/``clear``/``reset``/``check``, plus ``decr``), so after
    this has run ``limits.storage.storage_from_string("sqlite:///x.db")`` and
    ``limits.strategies.FixedWindowRateLimiter`` work with it too. See
    :class:`SQLiteCounters` for the design; the URI is read by :func:`sqlite_path`. Options:
    ``timeout`` (seconds to wait for another process's write lock; default 30).

    Built on first use, so that ``limits`` is imported only then.
    """
    try:
        from limits.storage import Storage
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    class SQLiteStorage(SQLiteCounters, Storage):
        """Fixed-window counters in a SQLite file; see :func:`sqlite_storage_class`."""

        STORAGE_SCHEME = ["sqlite"]  # noqa: RUF012 (limits' own declaration)

        def __init__(
            self,
            uri: str | None = None,
            wrap_exceptions: bool = False,
            **options: float | str | bool,
        ) -> None:
            Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions, **options)
            self._setup(uri, options)

    return SQLiteStorage
