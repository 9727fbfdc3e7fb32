"""The per-user run log: a SQLite sink of the event stream (see :mod:`.store`)."""

from consortium_lab.sinks.runlog.liveness import owner_is_alive, process_start_token
from consortium_lab.sinks.runlog.migrations import (
    MIGRATIONS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    RunStatus,
)
from consortium_lab.sinks.runlog.reader import FRAME_COLUMNS
from consortium_lab.sinks.runlog.store import RunStore

__all__ = [
    "FRAME_COLUMNS",
    "MIGRATIONS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "RunStatus",
    "RunStore",
    "owner_is_alive",
    "process_start_token",
]
