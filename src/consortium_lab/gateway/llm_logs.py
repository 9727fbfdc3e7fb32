"""Log model responses to ``llm``'s own log database, so ``llm logs`` lists them.

``llm`` keeps its log in ``<llm user dir>/logs.db`` (``llm.user_dir()``, moved by
``LLM_USER_PATH``) and stops logging while a ``logs-off`` file exists there (``llm logs off``).
:func:`log_to_llm` follows both rules, exactly like the ``llm`` CLI.

That database is in rollback-journal mode, not WAL, and we leave it so: each log is one
``BEGIN IMMEDIATE`` transaction (schema migration included) on a fresh connection with a busy
timeout, retried a bounded number of times on "database is locked", so several processes and
threads can log at once without losing a row. A logging failure never breaks a run: it is
logged as a warning and :func:`log_to_llm` returns None.

The rows are written by ``llm``'s own ``Response.log_to_db``, through a ``sqlite_utils``
database that answers repeated schema reads from memory for the length of the transaction
(:class:`_BatchDatabase`): ``sqlite_utils`` reads the table and view names up to 34 times per
logged response, and the write lock held by the transaction keeps the schema still.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from consortium_lab.sqlite import BUSY_TIMEOUT_S, LOCK_RETRIES, with_lock_retry

__all__ = ["llm_logging_on", "llm_logs_db_path", "log_to_llm"]

logger = logging.getLogger(__name__)


def llm_logs_db_path() -> Path:
    """The path of llm's log database: ``llm.user_dir() / "logs.db"`` (what
    ``llm.cli.logs_db_path()`` returns, without importing the CLI and its plugins)."""
    import llm

    return Path(llm.user_dir()) / "logs.db"


_user_dirs: dict[tuple[str | None, ...], str] = {}
"""``llm.user_dir()`` by the environment it depends on: it makes the folder on every call, and
the gateway asks once per response."""


def _llm_user_dir() -> str:
    key = tuple(os.environ.get(name) for name in ("LLM_USER_PATH", "XDG_CONFIG_HOME", "HOME"))
    path = _user_dirs.get(key)
    if path is None:
        import llm

        path = _user_dirs[key] = str(llm.user_dir())
    return path


def llm_logging_on() -> bool:
    """False while ``llm logs off`` is in effect (a ``logs-off`` file in llm's user dir)."""
    return not os.path.exists(os.path.join(_llm_user_dir(), "logs-off"))


def _responses(response: Any) -> list[Any]:
    """The single responses to log: a Response/AsyncResponse itself, a chain's parts, or those
    of each item of a list (a batch, written in one transaction)."""
    import llm
    from llm.models import _BaseChainResponse

    if isinstance(response, list):
        return [one for item in response for one in _responses(item)]
    if isinstance(response, (llm.Response, llm.AsyncResponse)):
        return [response]
    if isinstance(response, _BaseChainResponse):
        return list(response._responses)
    raise TypeError(f"cannot log {type(response).__name__} to llm: not an llm response")


_SCHEMA_READS = (
    "select name from sqlite_master where type = 'table'",
    "select name from sqlite_master where type = 'view'",
    "pragma table_info(",
)
"""The schema reads :class:`_BatchDatabase` keeps (lower-cased prefixes): what ``sqlite_utils``
repeats for every insert, update and table look-up."""

_SCHEMA_CHANGES = ("create", "alter", "drop")


class _Rows:
    """The rows of a kept schema read, read like the ``sqlite3.Cursor`` they came from."""

    def __init__(self, description: Any, rows: list[Any]) -> None:
        self.description = description
        self._rows = rows
        self._at = 0

    def fetchall(self) -> list[Any]:
        rows, self._at = self._rows[self._at :], len(self._rows)
        return rows

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def __iter__(self) -> Any:
        return iter(self.fetchall())


def _batch_database(conn: sqlite3.Connection) -> Any:
    """A ``sqlite_utils.Database`` on ``conn`` for one write transaction: the schema reads of
    :data:`_SCHEMA_READS` are run once and then answered from memory until a statement changes
    the schema (``CREATE``, ``ALTER``, ``DROP``, or any script), which forgets them."""
    import sqlite_utils

    class _BatchDatabase(sqlite_utils.Database):
        def __init__(self, conn: sqlite3.Connection) -> None:
            super().__init__(conn)
            self._schema_reads: dict[tuple[str, str | None], _Rows] = {}
            # db[name] asks for the view names each time; tables and views hold no rows.
            self._items: dict[str, Any] = {}

        def __getitem__(self, name: str) -> Any:
            item = self._items.get(name)
            if item is None:
                item = self._items[name] = super().__getitem__(name)
            return item

        def execute(self, sql: str, parameters: Any = None) -> Any:
            head = sql[:60].lstrip().lower()
            if head.startswith(_SCHEMA_READS):
                key = (sql, None if parameters is None else repr(parameters))
                kept = self._schema_reads.get(key)
                if kept is None:
                    cursor = super().execute(sql, parameters)
                    kept = _Rows(cursor.description, cursor.fetchall())
                    self._schema_reads[key] = kept
                return _Rows(kept.description, kept._rows)
            if head.startswith(_SCHEMA_CHANGES):
                self._schema_reads.clear()
                self._items.clear()
            return super().execute(sql, parameters)

        def executescript(self, sql: str) -> Any:
            self._schema_reads.clear()
            self._items.clear()
            return super().executescript(sql)

    return _BatchDatabase(conn)


_migrated: set[tuple[str, int]] = set()
"""Log files (path, inode) this process has already migrated: llm's ``migrate`` reads the
schema of every table each time, a few milliseconds of CPU per logged response."""


def _file_id(path: Path) -> tuple[str, int] | None:
    try:
        return (str(path), path.stat().st_ino)
    except OSError:
        return None


def _log_once(path: Path, responses: list[Any], busy_timeout: float) -> None:
    from llm.migrations import migrate

    conn = sqlite3.connect(path, timeout=busy_timeout)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db = _batch_database(conn)
        # IMMEDIATE takes the write lock up front: two writers never both hold a read lock and
        # then deadlock upgrading it, and migrating a fresh file is serialised too.
        conn.execute("BEGIN IMMEDIATE")
        try:
            file_id = _file_id(path)
            if file_id not in _migrated:
                migrate(db)
            for response in responses:
                response.log_to_db(db)  # its own transaction nests as a savepoint
        except BaseException:
            db.rollback()
            raise
        conn.commit()
        if file_id is not None:
            _migrated.add(file_id)
    finally:
        conn.close()


def log_to_llm(
    response: Any,
    *,
    path: str | Path | None = None,
    busy_timeout: float = BUSY_TIMEOUT_S,
    retries: int = LOCK_RETRIES,
) -> str | None:
    """Log a completed ``llm`` response (``Response``, ``AsyncResponse``, a chain, or a list of
    them in one transaction) to llm's log database and return its (the last one's) id, or None
    when logging is off or failed.

    ``path`` overrides the database (default :func:`llm_logs_db_path`; the ``logs-off`` switch
    applies only to the default). An ``AsyncResponse`` must have been awaited, and a
    ``Response`` must be complete: logging never runs a prompt. Never raises.
    """
    try:
        if path is None:
            if not llm_logging_on():
                return None
            db_path = llm_logs_db_path()
        else:
            db_path = Path(path)
        responses = _responses(response)
        for item in responses:
            if not getattr(item, "_done", False):
                raise ValueError(f"response {getattr(item, 'id', '?')} is not complete yet")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with_lock_retry(
            lambda: _log_once(db_path, responses, busy_timeout),
            what=f"llm log {db_path}",
            retries=retries,
        )
        return str(responses[-1].id) if responses else None
    except Exception as error:
        logger.warning("could not log a response to llm's log database: %s", error, exc_info=True)
        return None
