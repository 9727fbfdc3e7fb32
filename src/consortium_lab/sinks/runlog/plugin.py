"""The run log as the engine's default: the ``open_run_log`` hook, answered by :class:`RunStore`
(registered by ``consortium_lab/__init__.py``)."""

from __future__ import annotations

from pathlib import Path

from consortium_lab.engine.hookspecs import hookimpl
from consortium_lab.sinks.runlog.store import RunStore


@hookimpl
def open_run_log(path: Path | None) -> RunStore:
    """The run log at ``path``, or the per-user default file."""
    return RunStore(path)
