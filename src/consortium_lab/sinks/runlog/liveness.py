"""Who owns a running run, and whether it is still alive: owner records, the heartbeat, and
marking ``interrupted`` the runs whose process died.

Each run records its owner (host name, pid and an opaque process-start token) and a heartbeat
refreshed on every event and by a daemon timer thread while the process has running runs.
Whenever a process opens the run log, :meth:`Liveness.recover_interrupted` marks
``interrupted`` every ``running`` run whose owner is gone (see :func:`owner_is_alive`), keeping
everything it had recorded.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import sqlite_utils

from consortium_lab.sinks.runlog.connection import Connection, utc_now

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_STALE_AFTER",
    "Liveness",
    "owner_is_alive",
    "process_start_token",
]

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 5.0
DEFAULT_STALE_AFTER = 60.0


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _linux_boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _linux_proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, starttime)`` of ``pid`` from ``/proc/<pid>/stat``; None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # field 3 (state) and field 22 (starttime)


def process_start_token(pid: int | None = None) -> str | None:
    """An opaque token identifying process ``pid`` (default: this one) among all processes
    that ever had that pid on this host: ``linux:<boot id>:<start time in clock ticks>``.

    None where it cannot be read (not Linux, no ``/proc``): liveness then falls back to the
    heartbeat's age.
    """
    if not sys.platform.startswith("linux"):
        return None
    stat = _linux_proc_stat(os.getpid() if pid is None else pid)
    boot_id = _linux_boot_id()
    if stat is None or boot_id is None:
        return None
    return f"linux:{boot_id}:{stat[1]}"


def _pid_state(pid: int) -> Literal["dead", "alive", "unknown"]:
    """Whether process ``pid`` exists on this host (a zombie counts as dead)."""
    if pid <= 0:
        return "unknown"
    if sys.platform.startswith("linux") and Path("/proc/self/stat").exists():
        stat = _linux_proc_stat(pid)
        if stat is None:
            return "dead"
        return "dead" if stat[0] in ("Z", "X", "x") else "alive"
    if sys.platform == "win32":
        return "unknown"  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        return "alive"  # exists, owned by someone else
    except OSError:
        return "unknown"
    return "alive"


def _heartbeat_fresh(heartbeat_at: str | None, stale_after: float, now: datetime) -> bool:
    beat = _parse_time(heartbeat_at)
    if beat is None:
        return False
    return (now - beat).total_seconds() <= stale_after


def owner_is_alive(
    owner_host: str | None,
    owner_pid: int | None,
    owner_started_at: str | None,
    heartbeat_at: str | None,
    *,
    stale_after: float = DEFAULT_STALE_AFTER,
    now: datetime | None = None,
    host: str | None = None,
) -> bool:
    """Decide whether the process that owns a ``running`` run may still be running it.

    * Same host (``owner_host`` equals this host's name): the owner is gone when its pid does
      not exist (or is a zombie), or when the pid exists but its process-start token differs
      from the recorded one (the pid was reused). When the token cannot be compared (not
      Linux, none recorded, recorded during another boot) and the pid exists, the heartbeat
      decides.
    * Other host: the owner is gone when the heartbeat is older than ``stale_after`` seconds.

    Anything uncertain counts as alive: a live owner's run must never be marked.
    """
    now = now or datetime.now(UTC)
    this_host = host or socket.gethostname()
    if owner_host != this_host or owner_pid is None:
        return _heartbeat_fresh(heartbeat_at, stale_after, now)
    state = _pid_state(int(owner_pid))
    if state == "dead":
        return False
    if state == "unknown":
        return _heartbeat_fresh(heartbeat_at, stale_after, now)
    if owner_started_at and owner_started_at.startswith("linux:"):
        current = process_start_token(int(owner_pid))
        if current is None:
            # Vanished between the two reads, or /proc unreadable: ask again.
            return _pid_state(int(owner_pid)) != "dead"
        recorded_boot = owner_started_at.split(":")[1]
        current_boot = current.split(":")[1]
        if recorded_boot == current_boot:
            return current == owner_started_at
    return _heartbeat_fresh(heartbeat_at, stale_after, now)


class Liveness(Connection):
    """The owner-and-heartbeat part of the run log.

    ``heartbeat_interval`` is how often (seconds) the timer thread refreshes the heartbeat of
    this process's running runs; ``stale_after`` is how old another host's heartbeat must be
    before its run counts as interrupted.
    """

    def __init__(
        self, path: Path, *, busy_timeout: float, heartbeat_interval: float, stale_after: float
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self._active: set[str] = set()  # running runs this process owns
        self._heartbeat_thread: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._host = socket.gethostname()
        self._start_token = process_start_token()
        super().__init__(path, busy_timeout=busy_timeout)

    def _forked(self) -> None:
        super()._forked()
        self._start_token = process_start_token()
        self._active = set()
        self._heartbeat_thread = None
        self._heartbeat_stop = threading.Event()

    def _stop_heartbeat(self) -> None:
        self._heartbeat_stop.set()
        thread = self._heartbeat_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.busy_timeout + 5)

    def _touch(self, db: sqlite_utils.Database, run_ids: Iterable[str]) -> None:
        """Refresh the heartbeat of this process's runs; a run another process wrongly marked
        ``interrupted`` (a stale heartbeat after a suspend, say) is running again."""
        stamp = utc_now()
        for run_id in run_ids:
            db.execute(
                "UPDATE runs SET heartbeat_at = ?,"
                " status = CASE status WHEN 'interrupted' THEN 'running' ELSE status END,"
                " finished_at = CASE status WHEN 'interrupted' THEN NULL ELSE finished_at END,"
                " error = CASE status WHEN 'interrupted' THEN NULL ELSE error END"
                " WHERE id = ? AND status IN ('running', 'interrupted')"
                " AND owner_host = ? AND owner_pid = ? AND owner_started_at IS ?",
                [stamp, run_id, self._host, self._pid, self._start_token],
            )

    # -- heartbeat ----------------------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        with self._lock:
            thread = self._heartbeat_thread
            if thread is not None and thread.is_alive():
                return
            self._heartbeat_stop = threading.Event()
            thread = threading.Thread(
                target=self._heartbeat_loop,
                args=(self._heartbeat_stop,),
                name=f"consortium-lab-heartbeat-{self.path.name}",
                daemon=True,
            )
            self._heartbeat_thread = thread
            thread.start()

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_interval):
            with self._lock:
                active = sorted(self._active)
                if not active or self._closed:
                    self._heartbeat_thread = None
                    return
            try:
                self.heartbeat(active)
            except Exception:
                if self._closed:
                    return
                logger.warning("run log %s: heartbeat failed", self.path, exc_info=True)

    def heartbeat(self, run_ids: Iterable[str] | None = None) -> None:
        """Refresh ``heartbeat_at`` of ``run_ids`` (default: this process's running runs)."""
        with self._lock:
            ids = sorted(self._active if run_ids is None else run_ids)
        if ids:
            self._write(lambda db: self._touch(db, ids), what="heartbeat")

    # -- crash recovery -----------------------------------------------------------------------
    def recover_interrupted(self) -> list[str]:
        """Mark ``interrupted`` every ``running`` run whose owner is gone (see
        :func:`owner_is_alive`); its members, decisions and events stay. Returns their ids."""
        candidates = self._read(
            "SELECT id, owner_host, owner_pid, owner_started_at, heartbeat_at, started_at"
            " FROM runs WHERE status = 'running'"
        )
        now = datetime.now(UTC)
        gone = []
        for row in candidates:
            with self._lock:
                if row["id"] in self._active:
                    continue
            alive = owner_is_alive(
                row["owner_host"],
                row["owner_pid"],
                row["owner_started_at"],
                row["heartbeat_at"] or row["started_at"],
                stale_after=self.stale_after,
                now=now,
                host=self._host,
            )
            if not alive:
                gone.append(row)
        if not gone:
            return []

        def mark(db: sqlite_utils.Database) -> list[str]:
            marked = []
            for row in gone:
                owner = f"{row['owner_host']}:{row['owner_pid']}"
                cursor = db.execute(
                    "UPDATE runs SET status = 'interrupted',"
                    " finished_at = coalesce(heartbeat_at, started_at), error = ?"
                    " WHERE id = ? AND status = 'running' AND heartbeat_at IS ?",
                    [
                        f"interrupted: the process running it ({owner}) is gone",
                        row["id"],
                        row["heartbeat_at"],
                    ],
                )
                if cursor.rowcount:
                    marked.append(row["id"])
            return marked

        marked = self._write(mark, what="recover_interrupted")
        for run_id in marked:
            logger.info("run log %s: run %s was interrupted", self.path, run_id)
        return marked
