"""The engine's plugin manager: :data:`pm`, with the hooks of :mod:`.hookspecs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy

from consortium_lab.engine import hookspecs
from consortium_lab.engine.hookspecs import RunLog

__all__ = ["pm", "resolve_run_log"]

pm = pluggy.PluginManager("consortium_lab")
pm.add_hookspecs(hookspecs)


def resolve_run_log(store: Any) -> RunLog | None:
    """The run log ``store`` names: a :class:`RunLog` as is, ``False`` for none, else (a path,
    or ``None`` for the default file) the one the registered plugins open."""
    if store is False:
        return None
    if isinstance(store, RunLog):
        return store
    opened: RunLog | None = pm.hook.open_run_log(path=Path(store) if store is not None else None)
    if opened is None:
        raise RuntimeError(
            "no run log plugin is registered (import consortium_lab, or pass store=False)"
        )
    return opened
