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

__all__ = ["BUSY_TIMEOUT_S", "LOCK_RETRIES", "is_locked", "with_lock_retry"]

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
