"""The engine's plugin hooks (pluggy, as ``llm``'s ``hookspecs.py``): what the engine asks of
the layers above it without importing them.

The engine must not open the run log itself (it lives above the engine, in the sinks); it asks
for one through :func:`open_run_log`. The built-in implementation (``RunStore``) is registered
by the package (``consortium_lab/__init__.py``); a plugin registered later takes precedence
(pluggy calls the newest implementation first and ``firstresult`` stops at its answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pluggy

from consortium_lab.engine.events import Event

__all__ = ["RunLog", "hookimpl", "hookspec", "open_run_log"]

hookspec = pluggy.HookspecMarker("consortium_lab")
hookimpl = pluggy.HookimplMarker("consortium_lab")


@runtime_checkable
class RunLog(Protocol):
    """What the engine needs of a run log: record each event, and give a conversation back."""

    path: Path

    def record(self, event: Event) -> bool:
        """Write one event (never raising into the run); whether it was written."""
        ...

    def list_runs(
        self, limit: int | None = None, conversation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Recorded runs, newest first (``config`` decoded)."""
        ...

    def get_events(self, run_id: str) -> list[Event]:
        """A run's recorded events in order (a branch's parent is in its ``run_started``)."""
        ...

    def conversation_history(
        self, conversation_id: str, before_turn: int | None = None
    ) -> dict[tuple[str, int], list[tuple[str, str]]]:
        """Each member's own ``(user prompt, answer)`` turns in a conversation (only those
        before ``before_turn`` when given)."""
        ...


@hookspec(firstresult=True)
def open_run_log(path: Path | None) -> RunLog | None:
    """Open the run log at ``path`` (``None``: the per-user default file)."""
