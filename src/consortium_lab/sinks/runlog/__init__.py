"""The per-user run log: a SQLite sink of the event stream (see :mod:`.store`)."""

from consortium_lab.sinks.runlog.liveness import owner_is_alive, process_start_token
from consortium_lab.sinks.runlog.migrations import (
    MIGRATIONS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    RunStatus,
)
from consortium_lab.sinks.runlog.purge import (
    RETENTION_ENV,
    NotARunLogError,
    PurgeReport,
    effective_retention_days,
    parse_days,
    purge,
)
from consortium_lab.sinks.runlog.reader import FRAME_COLUMNS
from consortium_lab.sinks.runlog.retention_choice import (
    chosen_retention_days,
    set_retention_days,
)
from consortium_lab.sinks.runlog.store import RunStore

__all__ = [
    "FRAME_COLUMNS",
    "MIGRATIONS",
    "RETENTION_ENV",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "NotARunLogError",
    "PurgeReport",
    "RunStatus",
    "RunStore",
    "chosen_retention_days",
    "effective_retention_days",
    "owner_is_alive",
    "parse_days",
    "process_start_token",
    "purge",
    "set_retention_days",
]
