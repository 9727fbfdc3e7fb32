"""Log model responses to ``llm``'s own log database, so ``llm logs`` lists them.

``llm`` keeps its log in ``<llm user dir>/logs.db`` (``llm.user_dir()``, moved by
``LLM_USER_PATH``) and stops logging while a ``logs-off`` file exists there (``llm logs off``).
:func:`log_to_llm` follows both rules, exactly like the ``llm`` CLI.

That database is in rollback-journal mode, not WAL, and we leave it so: each log is one
``BEGIN IMMEDIATE`` transaction (schema migration included) on a fresh connection with a busy
timeout, retried a bounded number of times on "database is locked", so several processes and
threads can log at once without losing a row. A logging failure never breaks a run: it is
logged as a warning and :func:`log_to_llm` returns None.
"""

from __future__ import annotations

import logging
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


def llm_logging_on() -> bool:
    """False while ``llm logs off`` is in effect (a ``logs-off`` file in llm's user dir)."""
    import llm

    return not (Path(llm.user_dir()) / "logs-off").exists()


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


_migrated: set[tuple[str, int]] = set()
"""Log files (path, inode) this process has already migrated: llm's ``migrate`` reads the
schema of every table each time, a few milliseconds of CPU per logged response."""


def _file_id(path: Path) -> tuple[str, int] | None:
    try:
        return (str(path), path.stat().st_ino)
    except OSError:
        return None


def _log_once(path: Path, responses: list[Any], busy_timeout: float) -> None:
    import sqlite_utils
    from llm.migrations import migrate

    conn = sqlite3.connect(path, timeout=busy_timeout)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db = sqlite_utils.Database(conn)
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
