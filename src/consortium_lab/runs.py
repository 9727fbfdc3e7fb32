"""Your past runs: list, reopen, export, delete and analyse what the run log recorded.

Every function takes an optional ``path`` to a run log file; the default is the per-user log
(``CONSORTIUM_LAB_DB`` or ``<data folder>/runs.db``, see :mod:`consortium_lab.paths`)::

    from consortium_lab import runs

    latest = runs.list(limit=1)[0]
    result = runs.get(latest["id"])          # a RunResult, rebuilt from the recorded events
    print(runs.export(latest["id"], "markdown"))
    frame = runs.to_pandas()                 # one row per member response

Opening the log also marks runs whose process died as ``interrupted`` (see
:mod:`consortium_lab.sinks.runlog`); such a run reopens with what it had completed.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from consortium_lab.sinks.runlog import FRAME_COLUMNS, PurgeReport, RunStore

if TYPE_CHECKING:
    import pandas as pd

    from consortium_lab.engine.result import RunResult

__all__ = [
    "EXPORT_FORMATS",
    "PurgeReport",
    "delete",
    "delete_all",
    "export",
    "export_all",
    "get",
    "list",
    "purge",
    "purge_by_retention",
    "to_pandas",
]

ExportFormat = Literal["json", "markdown"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)

_TIME_COLUMNS = ("run_started_at", "run_finished_at", "created_at")


@contextmanager
def _open(path: str | Path | None) -> Iterator[RunStore]:
    store = RunStore(path)
    try:
        yield store
    finally:
        store.close()


def _unknown(run_id: str) -> KeyError:
    return KeyError(f"no run with id {run_id!r} in the run log")


def list(
    limit: int | None = None, *, tag: str | None = None, path: str | Path | None = None
) -> builtins.list[dict[str, Any]]:
    """The recorded runs, newest first, as dicts of the ``runs`` table (``config`` decoded):
    ``id``, ``conversation_id``, ``turn``, ``prompt``, ``mode``, ``arbiter``, ``status``,
    ``started_at``, ``finished_at``, ``iteration_count``, ``final_confidence``,
    ``final_synthesis``, ``error``... At most ``limit`` runs when given; only the runs of the
    evaluation tagged ``tag`` when given (``consortium-lab eval list`` shows the tags)."""
    with _open(path) as store:
        return store.list_runs(limit=limit, tag=tag)


def get(run_id: str, *, path: str | Path | None = None) -> RunResult:
    """Rebuild run ``run_id`` as a :class:`~consortium_lab.engine.result.RunResult` by folding its
    recorded events. Its ``status`` is the run log's (so an interrupted run reads
    ``interrupted``). Raises ``KeyError`` for an unknown id."""
    from consortium_lab.engine.result import RunResult

    with _open(path) as store:
        row = store.get_run_row(run_id)
        events = store.get_events(run_id)
    if row is None or not events:
        raise _unknown(run_id)
    result = RunResult.from_events(events)
    result.status = row["status"]
    if row["status"] != "running":
        result.finished_at = result.finished_at or row["finished_at"]
    if row["status"] in ("interrupted", "cancelled", "failed") and not result.error:
        result.error = row["error"]
    return result


def export(run_id: str, format: str = "json", *, path: str | Path | None = None) -> str:
    """Run ``run_id`` as text: ``"json"`` (``RunResult.to_dict()``, indented) or
    ``"markdown"`` (``RunResult.to_markdown()``). Raises ``KeyError`` for an unknown id and
    ``ValueError`` for an unknown format."""
    if format not in EXPORT_FORMATS:
        allowed = ", ".join(repr(f) for f in EXPORT_FORMATS)
        raise ValueError(f"unknown export format {format!r}: use one of {allowed}")
    result = get(run_id, path=path)
    if format == "json":
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str)
    return result.to_markdown()


def delete(run_id: str, *, path: str | Path | None = None) -> None:
    """Remove run ``run_id`` and everything recorded for it (a conversation left without runs
    goes too). Raises ``KeyError`` for an unknown id."""
    with _open(path) as store:
        if not store.delete_run(run_id):
            raise _unknown(run_id)


def purge(
    older_than_days: int | None = None,
    *,
    all: bool = False,
    dry_run: bool = False,
    path: str | Path | None = None,
    llm_log: str | Path | bool = True,
) -> PurgeReport:
    """Delete the runs that started more than ``older_than_days`` days ago, or every finished
    run with ``all=True``, for good: their rows, conversations left empty, and the rows of llm's
    log (``llm_log``: True for llm's own ``logs.db``, a path, or False to leave it) that no kept
    run references; both files are vacuumed, so the deleted text is gone from them. A run still
    running in a live process is kept (one whose process died is marked interrupted and goes).
    ``dry_run=True`` only counts. Returns a
    :class:`~consortium_lab.sinks.runlog.PurgeReport`; raises ``ValueError`` for days that are
    not a whole number of at least 1, and ``NotARunLogError`` (a ``ValueError``) for a missing
    file or one that is not a run log."""
    from consortium_lab import paths
    from consortium_lab.sinks.runlog import purge as purge_log
    from consortium_lab.sinks.runlog.purge import check_run_log

    log_path: str | Path | None
    if llm_log is True:
        from consortium_lab.gateway.llm_log_writer import flush_all
        from consortium_lab.gateway.llm_logs import llm_logs_db_path

        # Responses this process still has queued would otherwise land after the purge.
        flush_all()
        log_path = llm_logs_db_path()
    else:
        log_path = None if llm_log is False else llm_log
    db_path = path if path is not None else paths.runs_db_path()
    check_run_log(Path(db_path))  # before a store opens it: a store would create the schema
    # A run whose process died stays marked running until a store opens the log; opening one
    # marks it interrupted, so "all" takes it too. Only a live writer's run is kept.
    with _open(db_path):
        pass
    return purge_log(
        db_path,
        older_than_days=older_than_days,
        everything=all,
        dry_run=dry_run,
        llm_log=log_path,
    )


def purge_by_retention(path: str | Path | None = None) -> PurgeReport | None:
    """Purge by the retention in effect: the smaller of the operator's
    ``CONSORTIUM_LAB_RETENTION_DAYS`` and the user's own choice (``retention.json`` in the data
    folder). ``None`` when neither is set or no run log exists yet (none is created). The chat
    server runs it at start and every 6 hours, and the chat right after the user saves a new
    choice. A malformed variable or choice raises ``ValueError`` naming it."""
    from consortium_lab import paths
    from consortium_lab.sinks.runlog import chosen_retention_days, effective_retention_days

    days = effective_retention_days(chosen_retention_days())
    if days is None:
        return None
    db_path = Path(path) if path is not None else paths.runs_db_path()
    if not db_path.exists():
        return None
    return purge(days, path=db_path)


def export_all(
    *, path: str | Path | None = None, configs_path: str | Path | None = None
) -> dict[str, Any]:
    """Everything of yours the run log and the saved-config store hold, as one JSON-ready
    dict ("Download my data"): ``runs`` (every run in the export shape of :func:`export`,
    newest first), ``configs`` (every saved config, as ``configs.export()`` writes them) and
    ``exported_at``. ``configs_path`` is the saved-config store (default llm-consortium's)."""
    from datetime import UTC, datetime

    from consortium_lab import configs

    with _open(path) as store:
        ids = [row["id"] for row in store.list_runs()]
    exported = []
    for run_id in ids:
        try:
            exported.append(get(run_id, path=path).to_dict())
        except KeyError:  # deleted meanwhile, or a run with no event recorded yet
            continue
    saved = json.loads(configs.export(path=configs_path))["configs"]
    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "runs": exported,
        "configs": saved,
    }


def delete_all(
    *,
    path: str | Path | None = None,
    llm_log: str | Path | bool = True,
    configs_path: str | Path | None = None,
) -> PurgeReport:
    """Delete all your runs (as :func:`purge` with ``all=True``: their rows in llm's log too,
    and both files vacuumed) and every saved config ("Delete my data"). A run still running is
    kept. Returns the purge's report."""
    from consortium_lab import configs

    report = purge(all=True, path=path, llm_log=llm_log)
    for saved in configs.list(path=configs_path):
        configs.remove(saved.name, path=configs_path)
    return report


def to_pandas(*, path: str | Path | None = None) -> pd.DataFrame:
    """Every member response of every run as a DataFrame, one row per response: the fields of
    its :class:`~consortium_lab.engine.records.MemberRecord` (``usage`` as ``input_tokens`` and
    ``output_tokens``; ``cost``, ``parse_warnings``...) with its run's columns joined
    (``run_status``, ``run_started_at``, ``prompt``, ``mode``, ``arbiter``...). Time columns are
    timezone-aware datetimes and ``cached`` is a bool."""
    import pandas as pd

    with _open(path) as store:
        rows = store.member_frame_rows()
    frame = pd.DataFrame(rows, columns=builtins.list(FRAME_COLUMNS))
    for column in _TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["cached"] = frame["cached"].astype(bool)
    return frame
