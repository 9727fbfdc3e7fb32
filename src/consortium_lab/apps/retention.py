"""Run-log retention outside a user's own command: the chat server's purge at start and every
6 hours (:class:`RetentionLoop`, started by :mod:`~consortium_lab.apps.voila_server`), and
root's sweep of every home on one machine (:func:`purge_homes`, ``consortium-lab purge
--all-homes``).

The loop runs in the Voila server process, not in each kernel: one purge per server, however
many pages are open. A dormant user's runs stay until their server's next start (a user who
never comes back keeps data until root runs ``--all-homes``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from consortium_lab.runs import purge_by_retention
from consortium_lab.sinks.runlog import PurgeReport

__all__ = [
    "PURGE_EVERY_S",
    "HomeResult",
    "RetentionLoop",
    "home_run_logs",
    "purge_homes",
]

logger = logging.getLogger(__name__)

PURGE_EVERY_S = 6 * 3600.0
"""Seconds between two purges while a chat server runs."""

# Where a user server keeps its files in a home (HOME set, no CONSORTIUM_LAB_HOME,
# XDG_DATA_HOME or LLM_USER_PATH: the hub's spawners set none of them).
DATA_IN_HOME = Path(".local/share/consortium-lab")
RUN_LOG_IN_HOME = DATA_IN_HOME / "runs.db"
LLM_LOG_IN_HOME = Path(".config/io.datasette.llm/logs.db")


class RetentionLoop:
    """Calls ``purge`` now and then every ``every`` seconds on a daemon thread until
    :meth:`stop`. A failed purge is logged and tried again at the next turn: retention never
    stops the chat."""

    def __init__(
        self,
        purge: Callable[[], PurgeReport | None] = purge_by_retention,
        *,
        every: float = PURGE_EVERY_S,
    ) -> None:
        if every <= 0:
            raise ValueError(f"every: a positive number of seconds (got {every})")
        self.purge = purge
        self.every = every
        self.turns = 0
        """Purges attempted so far (for tests and the log)."""
        self.turned = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-log-retention", daemon=True)

    def start(self) -> RetentionLoop:
        """Start the thread (the first purge runs at once)."""
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the purge in progress, if any."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                report = self.purge()
                if report is not None and report.runs:
                    logger.info("retention: deleted %d runs from %s", report.runs, report.path)
            except Exception:  # a bad variable or a locked file must not end the loop
                logger.exception("retention: the run log purge failed (tried again later)")
            with self.turned:
                self.turns += 1
                self.turned.notify_all()
            if self._stop.wait(self.every):
                return


@dataclass(frozen=True)
class HomeResult:
    """What ``--all-homes`` did in one home: a report, the error that stopped it, or neither
    (``--retention`` and no retention set for that home)."""

    home: Path
    report: PurgeReport | None = None
    error: str | None = None


def home_run_logs(base: Path) -> Iterator[tuple[Path, Path]]:
    """``(home, run log)`` for every folder of ``base`` holding a run log where a user server
    puts it (``~/.local/share/consortium-lab/runs.db``), by name."""
    for home in sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()):
        log = home / RUN_LOG_IN_HOME
        if log.is_file():
            yield home, log


def _give_back(path: Path, uid: int, gid: int) -> None:
    # Run as root, SQLite's vacuum and WAL leave files root owns in the user's folder, which
    # the user's next server could not open.
    for name in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        if name.exists():
            os.chown(name, uid, gid)


def purge_homes(
    base: Path,
    days: int | None,
    *,
    everything: bool = False,
    retention: bool = False,
    dry_run: bool = False,
    llm_log: bool = True,
) -> list[HomeResult]:
    """Purge every home's run log under ``base`` (see :func:`home_run_logs`): runs older than
    ``days``, or every finished run with ``everything``, with their rows in the home's llm log.
    With ``retention`` each home's days are the operator's maximum or that home's own choice
    (``retention.json``), the smaller; ``days`` is then ignored. One home's failure is
    reported in its :class:`HomeResult` and the others go on. Files keep the owner of the
    home's run log."""
    from consortium_lab import runs
    from consortium_lab.sinks.runlog import chosen_retention_days, effective_retention_days

    if not base.is_dir():
        raise ValueError(f"{base}: no such folder of homes")
    results = []
    for home, log in home_run_logs(base):
        llm_path = home / LLM_LOG_IN_HOME
        try:
            owner = log.stat()
            llm_owner = llm_path.stat() if llm_path.is_file() else None
            home_days = days
            if retention:
                home_days = effective_retention_days(chosen_retention_days(home / DATA_IN_HOME))
                if home_days is None:
                    results.append(HomeResult(home))
                    continue
            report = runs.purge(
                home_days,
                all=everything,
                dry_run=dry_run,
                path=log,
                llm_log=llm_path if llm_log and llm_path.is_file() else False,
            )
            if os.geteuid() == 0 and not dry_run:
                _give_back(log, owner.st_uid, owner.st_gid)
                if llm_owner is not None:
                    _give_back(llm_path, llm_owner.st_uid, llm_owner.st_gid)
            results.append(HomeResult(home, report=report))
        except (OSError, ValueError) as exc:
            results.append(HomeResult(home, error=str(exc)))
    return results
