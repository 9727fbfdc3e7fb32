"""SQLite helpers every writer of a shared file needs: riding out "database is locked".

Both the run log and the writes to ``llm``'s own log take their write lock with
``BEGIN IMMEDIATE`` and a busy timeout; :func:`with_lock_retry` covers the rare "database is
locked" that still gets through (a checkpoint, a timeout under heavy contention).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "BUSY_TIMEOUT_S",
    "LOCK_RETRIES",
    "import_sqlite_utils_without_pandas",
    "is_locked",
    "with_lock_retry",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another's lock before SQLite reports it locked."""
LOCK_RETRIES = 8

_T = TypeVar("_T")


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked"/"busy" (worth another try)."""
    message = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in message or "busy" in message
    )


def with_lock_retry(action: Callable[[], _T], *, what: str, retries: int = LOCK_RETRIES) -> _T:
    """Run ``action``; on "database is locked" wait (jittered, growing) and run it again, at
    most ``retries`` times in all. Any other error, or the last locked one, is raised."""
    for attempt in range(retries):
        try:
            return action()
        except sqlite3.OperationalError as error:
            if not is_locked(error) or attempt == retries - 1:
                raise
            # Jitter so that writers that collided once do not collide again in step.
            delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
            logger.debug("%s: %s; retrying in %.2fs", what, error, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def import_sqlite_utils_without_pandas() -> None:
    """Import ``sqlite_utils`` (which ``llm`` imports) without pandas and numpy.

    ``sqlite_utils`` imports both when they are installed, only to map their types to column
    types: about 46 MB of a chat kernel that never inserts a numpy value. A no-op when
    ``sqlite_utils`` is already imported; pandas and numpy stay importable afterwards (only
    ``sqlite_utils``' own column-type table lacks their types, so its ``insert`` of numpy
    values into a new column fails in this process). Chat kernels call it (see
    ``CONSORTIUM_LAB_CHAT_KERNEL`` in ``consortium_lab/__init__.py``).
    """
    import sys

    if "sqlite_utils" in sys.modules:
        return
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import sqlite_utils  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
