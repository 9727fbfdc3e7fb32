"""What the chat reads back from the run log: past runs, a conversation's turns, the last config.

Only the ``RunStore`` API is used (``list_runs``, ``get_events``, ``get_run_row``,
``latest_conversation_id``). A run the log still calls ``running`` but that this kernel is
not running was left behind by a page or kernel that went away: it is shown as
``interrupted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consortium_lab import configs as saved_configs_store
from consortium_lab.config.consortium import ConsortiumConfig, check_models
from consortium_lab.engine.result import RunResult
from consortium_lab.widget.settings import default_config

__all__ = [
    "PAST_RUNS_LIMIT",
    "conversation_rows",
    "initial_config",
    "latest_config",
    "load_result",
    "past_runs",
    "shown_status",
]

PAST_RUNS_LIMIT = 50
"""The most runs the ``past_runs`` trait lists."""

INTERRUPTED = "interrupted: the page or kernel that ran it went away"


def shown_status(run_id: str, status: str, live_run_id: str | None) -> str:
    """The status to show for a run of the log, given the run this kernel is running now."""
    if status == "running" and live_run_id != run_id:
        return "interrupted"
    return status


def past_runs(store: Any, live_run_id: str | None) -> list[dict[str, Any]]:
    """The recent runs of ``store``, newest first, as the ``past_runs`` trait lists them."""
    return [
        {
            "id": r["id"],
            "conversation_id": r["conversation_id"],
            "turn": r["turn"],
            "prompt": (r["prompt"] or "")[:200],
            "status": shown_status(r["id"], r["status"], live_run_id),
            "started_at": r["started_at"],
            "final_confidence": r["final_confidence"],
            "mode": r["mode"],
            "iteration_count": r["iteration_count"],
        }
        for r in store.list_runs(limit=PAST_RUNS_LIMIT)
    ]


def conversation_rows(store: Any, chain: list[tuple[str, int | None]]) -> list[dict[str, Any]]:
    """The run rows a conversation shows, oldest first: those of each conversation of
    ``chain`` (:func:`~consortium_lab.engine.conversation.lineage`) before its cut turn."""
    rows: list[dict[str, Any]] = []
    for conversation_id, cut in chain:
        own = reversed(store.list_runs(conversation_id=conversation_id))
        rows.extend(r for r in own if cut is None or int(r["turn"]) < cut)
    return rows


def load_result(store: Any, row: Mapping[str, Any], live_run_id: str | None) -> RunResult | None:
    """The :class:`RunResult` of one run-log row, folded from its events (None without any),
    with the status shown for it."""
    events = store.get_events(row["id"])
    if not events:
        return None
    result = RunResult.from_events(events)
    status = shown_status(row["id"], row["status"], live_run_id)
    result.status = status  # type: ignore[assignment]
    if status != "running":
        result.finished_at = result.finished_at or row["finished_at"]
    if status in ("interrupted", "cancelled", "failed") and not result.error:
        result.error = row["error"] or (INTERRUPTED if status == "interrupted" else None)
    return result


def latest_config(store: Any) -> ConsortiumConfig | None:
    """The config of the newest run of ``store`` (a ``RunStore``, a path, ``None`` for the
    per-user file, ``False`` for no run log) when its models are usable here, else None."""
    from consortium_lab.sinks.runlog import RunStore

    if store is False:
        return None
    if not isinstance(store, RunStore):
        store = RunStore(store)
    rows = store.list_runs(limit=1)
    if not rows:
        return None
    try:
        return check_models(ConsortiumConfig.model_validate(rows[0]["config"]))
    except Exception:  # a config this install cannot run: start from the default instead
        return None


def initial_config(
    config: ConsortiumConfig | Mapping[str, Any] | str | None,
    restore: bool,
    store: Any,
    models: list[dict[str, Any]],
) -> ConsortiumConfig:
    """The config a new chat starts with: ``config`` (a saved config's name, a config, a dict
    of one); else, with ``restore``, the latest run's; else the default for ``models``."""
    if isinstance(config, str):
        return saved_configs_store.get(config)
    if isinstance(config, ConsortiumConfig):
        return config
    if config is not None:
        return ConsortiumConfig.model_validate(dict(config))
    if restore:
        restored = latest_config(store)
        if restored is not None:
            return restored
    return default_config([m["id"] for m in models])
