"""The per-user run log: a SQLite sink of the event stream.

:class:`RunStore` records every event of a run as it arrives (one committed write transaction
per event, so a crash loses at most the member in flight) and reads runs back. It never changes
a run: it only listens. The file is ``paths.runs_db_path()`` unless a path is given.

Concurrency
    The database is in WAL mode; every write transaction starts with ``BEGIN IMMEDIATE`` so a
    concurrent writer waits (``busy_timeout``) instead of failing, and a bounded retry covers
    the rare "database is locked" that still gets through. One store may be shared by the
    threads of one process (a lock serialises its connection); several processes may open the
    same file at once. A store must not be shared across ``fork()``: a child process reopens
    its own connection on first use.

Crash recovery
    Each run records its owner (host name, pid and an opaque process-start token) and a
    heartbeat refreshed on every event and by a daemon timer thread while the process has
    running runs. Whenever a process opens the store, :meth:`RunStore.recover_interrupted`
    marks ``interrupted`` every ``running`` run whose owner is gone (see
    :func:`owner_is_alive`), keeping everything it had recorded.

Tables
    ``schema_migrations``
        ``version`` (primary key), ``name``, ``applied_at``: one row per applied migration.
    ``conversations``
        ``id`` (primary key; the run id of its first run when the run gave none),
        ``created_at``, ``title`` (the first prompt, one line, truncated), ``config`` (JSON).
    ``runs``
        ``id`` (primary key), ``conversation_id``, ``turn``, ``prompt``, ``config`` (JSON),
        ``mode`` (``consortium``/``council``/``compare``), ``arbiter``, ``status`` (one of
        ``running``, ``completed``, ``failed``, ``cancelled``, ``interrupted``), ``started_at``,
        ``finished_at``, ``iteration_count``, ``final_confidence``, ``final_synthesis``,
        ``error``, ``owner_host``, ``owner_pid``, ``owner_started_at`` (process-start token:
        ``linux:<boot id>:<start time in clock ticks>``, NULL where unknown), ``heartbeat_at``.
    ``member_responses``
        One row per ``member_done`` / ``member_failed``: ``id`` (autoincrement), ``run_id``,
        ``iteration``, ``model``, ``instance``, ``stage``, ``status`` (``done``/``failed``),
        ``text`` (a failure's partial text), ``answer``, ``thought_process``, ``reasoning``,
        ``confidence``, ``latency_ms``, ``first_token_ms``, ``input_tokens``,
        ``output_tokens``, ``served_by``, ``cached``, ``attempts``, ``error``, ``error_type``,
        ``response_id``, ``created_at``.
    ``arbiter_decisions``
        One row per ``synthesis`` event: ``id``, ``run_id``, ``iteration``, ``model``,
        ``synthesis``, ``confidence``, ``analysis``, ``dissent``, ``needs_iteration``,
        ``refinement_areas`` (JSON), ``ranking`` (JSON), ``parse_ok``, ``warnings`` (JSON),
        ``raw``, ``latency_ms``, ``input_tokens``, ``output_tokens``, ``served_by``,
        ``cached``, ``created_at``.
    ``events``
        ``run_id``, ``seq`` (1-based per run; primary key together), ``kind``, ``json`` (the
        event's ``model_dump_json()``). Every event except ``member_delta`` and
        ``arbiter_delta``, so folding a run's events rebuilds it exactly.

All times are ISO-8601 UTC strings (event times where an event gives one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlite_utils

from consortium_lab import paths
from consortium_lab.engine.events import (
    ArbiterDelta,
    Event,
    IterationFinished,
    IterationStarted,
    MemberDelta,
    MemberDone,
    MemberFailed,
    RunFailed,
    RunFinished,
    RunStarted,
    SynthesisReady,
    parse_event,
)

__all__ = [
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "RunStatus",
    "RunStore",
    "owner_is_alive",
    "process_start_token",
]

logger = logging.getLogger(__name__)

RunStatus = Literal["running", "completed", "failed", "cancelled", "interrupted"]
RUN_STATUSES: tuple[RunStatus, ...] = ("running", "completed", "failed", "cancelled", "interrupted")

TITLE_LENGTH = 80
"""Conversation titles are the first prompt cut to this many characters."""

DEFAULT_HEARTBEAT_INTERVAL = 5.0
DEFAULT_STALE_AFTER = 60.0
BUSY_TIMEOUT_S = 30.0
LOCK_RETRIES = 8

_T = TypeVar("_T")


# -- time and owner identity ------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


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


# -- schema -----------------------------------------------------------------------------------


def _m001_initial(db: sqlite_utils.Database) -> None:
    statuses = ", ".join(f"'{s}'" for s in RUN_STATUSES)
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            title TEXT,
            config TEXT
        )"""
    )
    db.execute(
        f"""
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            turn INTEGER NOT NULL DEFAULT 1,
            prompt TEXT NOT NULL,
            config TEXT,
            mode TEXT,
            arbiter TEXT,
            status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ({statuses})),
            started_at TEXT NOT NULL,
            finished_at TEXT,
            iteration_count INTEGER NOT NULL DEFAULT 0,
            final_confidence REAL,
            final_synthesis TEXT,
            error TEXT,
            owner_host TEXT,
            owner_pid INTEGER,
            owner_started_at TEXT,
            heartbeat_at TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS member_responses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            model TEXT NOT NULL,
            instance INTEGER NOT NULL,
            stage TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            text TEXT,
            answer TEXT,
            thought_process TEXT,
            reasoning TEXT,
            confidence REAL,
            latency_ms REAL,
            first_token_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            served_by TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            error TEXT,
            error_type TEXT,
            response_id TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS arbiter_decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            model TEXT NOT NULL,
            synthesis TEXT,
            confidence REAL,
            analysis TEXT,
            dissent TEXT,
            needs_iteration INTEGER NOT NULL DEFAULT 0,
            refinement_areas TEXT,
            ranking TEXT,
            parse_ok INTEGER NOT NULL DEFAULT 1,
            warnings TEXT,
            raw TEXT,
            latency_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            served_by TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            json TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )"""
    )
    for index in (
        "CREATE INDEX IF NOT EXISTS runs_conversation ON runs (conversation_id, turn)",
        "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
        "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",
        "CREATE INDEX IF NOT EXISTS member_responses_run ON member_responses (run_id, iteration)",
        "CREATE INDEX IF NOT EXISTS arbiter_decisions_run ON arbiter_decisions (run_id, iteration)",
    ):
        db.execute(index)


MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite_utils.Database], None]], ...] = (
    (1, "initial", _m001_initial),
)
"""``(version, name, function)``, applied in order inside one write transaction each. Add new
ones at the end; never edit an applied one."""

SCHEMA_VERSION = MIGRATIONS[-1][0]


# -- helpers ----------------------------------------------------------------------------------


def _is_locked(error: BaseException) -> bool:
    message = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in message or "busy" in message
    )


def _with_lock_retry(action: Callable[[], _T], *, what: str, retries: int = LOCK_RETRIES) -> _T:
    """Run ``action``; on "database is locked" wait (jittered, growing) and run it again."""
    for attempt in range(retries):
        try:
            return action()
        except sqlite3.OperationalError as error:
            if not _is_locked(error) or attempt == retries - 1:
                raise
            delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
            logger.debug("%s: %s; retrying in %.2fs", what, error, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


def _mode_and_arbiter(config: Mapping[str, Any]) -> tuple[str, str | None]:
    mode = str(config.get("mode") or "consortium")
    if mode == "compare":
        return mode, None
    arbiter = config.get("arbiter")
    if isinstance(arbiter, Mapping):
        arbiter = arbiter.get("model")
    if not arbiter:
        models = config.get("models")
        if isinstance(models, Mapping) and models:
            arbiter = next(iter(models))
        elif isinstance(models, (list, tuple)) and models:
            arbiter = models[0]
    return mode, (str(arbiter) if arbiter else None)


_RUN_JSON_COLUMNS = ("config",)
_DECISION_JSON_COLUMNS = ("refinement_areas", "ranking", "warnings")


def _decode(row: dict[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    for column in columns:
        value = row.get(column)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[column] = json.loads(value)
    return row


# -- the store --------------------------------------------------------------------------------


class RunStore:
    """The run log at ``path`` (default :func:`consortium_lab.paths.runs_db_path`).

    Opening a store creates/migrates the schema and calls :meth:`recover_interrupted`. Record
    a run with :meth:`record` (or chain :meth:`consume` into an event stream); read it back
    with :meth:`list_runs`, :meth:`get_run_row`, :meth:`get_events` and friends.

    ``heartbeat_interval`` is how often (seconds) the timer thread refreshes the heartbeat of
    this process's running runs; ``stale_after`` is how old another host's heartbeat must be
    before its run counts as interrupted. ``recover=False`` skips recovery on open.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        stale_after: float = DEFAULT_STALE_AFTER,
        recover: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path) if path is not None else paths.runs_db_path()
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._active: set[str] = set()  # running runs this process owns
        self._heartbeat_thread: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._closed = False
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._start_token = process_start_token()
        self._db = self._open()
        self._migrate()
        if recover:
            self.recover_interrupted()

    # -- connection ---------------------------------------------------------------------------
    def _open(self) -> sqlite_utils.Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        db = sqlite_utils.Database(conn)

        def wal() -> None:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                logger.warning("run log %s: could not switch to WAL (got %r)", self.path, mode)

        _with_lock_retry(wal, what="enable WAL")
        # WAL + NORMAL is durable across process crashes; only an OS crash can lose the last
        # commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        return db

    @property
    def db(self) -> sqlite_utils.Database:
        """The underlying sqlite-utils database (reopened after a ``fork()``)."""
        if self._closed:
            raise RuntimeError(f"run log {self.path} is closed")
        if os.getpid() != self._pid:
            # A forked child must not use its parent's connection, nor own its parent's runs.
            self._lock = threading.RLock()
            self._pid = os.getpid()
            self._start_token = process_start_token()
            self._active = set()
            self._heartbeat_thread = None
            self._heartbeat_stop = threading.Event()
            self._db = self._open()
        return self._db

    def _write(self, action: Callable[[sqlite_utils.Database], _T], *, what: str) -> _T:
        """Run ``action`` in one ``BEGIN IMMEDIATE`` transaction, retrying while locked."""

        def attempt() -> _T:
            with self._lock:
                db = self.db
                if db.conn.in_transaction:  # never commit someone's leftover transaction
                    db.rollback()
                db.conn.execute("BEGIN IMMEDIATE")
                try:
                    result = action(db)
                except BaseException:
                    db.rollback()
                    raise
                db.conn.commit()
                return result

        return _with_lock_retry(attempt, what=what)

    def _read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            with self._lock:
                cursor = self.db.conn.execute(sql, params)
                columns = [d[0] for d in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

        return _with_lock_retry(attempt, what="read")

    def _migrate(self) -> None:
        def applied() -> set[int]:
            exists = self._read(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
            if not exists:
                return set()
            return {r["version"] for r in self._read("SELECT version FROM schema_migrations")}

        if {v for v, _, _ in MIGRATIONS} <= applied():
            return

        def migrate(db: sqlite_utils.Database) -> None:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
            for version, name, function in MIGRATIONS:
                if version in done:
                    continue
                function(db)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [version, name, _now()],
                )

        self._write(migrate, what="migrate")

    def schema_version(self) -> int:
        """The highest migration applied to this file."""
        rows = self._read("SELECT max(version) AS v FROM schema_migrations")
        return int(rows[0]["v"] or 0)

    def close(self) -> None:
        """Stop the heartbeat thread and close the connection (idempotent)."""
        self._heartbeat_stop.set()
        thread = self._heartbeat_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.busy_timeout + 5)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recording ----------------------------------------------------------------------------
    def record(self, event: Event, *, strict: bool = False) -> bool:
        """Write one event in its own committed transaction; returns whether it was written.

        ``run_started`` inserts the conversation (when new) and the run with its owner;
        ``member_done``/``member_failed`` insert a member row; ``synthesis`` inserts the
        decision; ``run_finished``/``run_failed`` close the run. Every event but the deltas is
        appended to ``events``. Deltas are ignored (no I/O, returns False).

        The run log is a sink: by default a failure (a database error, a second
        ``run_started`` for a run already recorded) is logged as a warning and never reaches
        the run. ``strict=True`` raises it instead.
        """
        if isinstance(event, (MemberDelta, ArbiterDelta)):
            return False
        try:
            self._record(event)
        except Exception:
            if strict:
                raise
            logger.warning(
                "run log %s: could not record %s of run %s",
                self.path,
                event.kind,
                event.run_id,
                exc_info=True,
            )
            return False
        return True

    def _record(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._write(lambda db: self._record_run_started(db, event), what="run_started")
            with self._lock:
                self._active.add(event.run_id)
            self._ensure_heartbeat()
            return
        self._write(lambda db: self._record_event(db, event), what=event.kind)
        if isinstance(event, (RunFinished, RunFailed)):
            with self._lock:
                self._active.discard(event.run_id)

    def record_many(self, events: Iterable[Event], *, strict: bool = False) -> int:
        """:meth:`record` each event in order; returns how many were written."""
        return sum(self.record(event, strict=strict) for event in events)

    async def consume(
        self, events: AsyncIterable[Event], *, strict: bool = False
    ) -> AsyncGenerator[Event, None]:
        """Record each event of ``events`` and yield it on unchanged, so a consumer can chain
        the store in front of itself: ``async for e in store.consume(engine.stream()): ...``.

        Writes run in a worker thread so the event loop is never blocked on the database. A
        recording failure is logged and the run goes on (``strict=True`` raises instead). If
        the stream stops before a run's ``run_finished``/``run_failed``, the run is closed as
        ``cancelled`` (cancellation, ``aclose()``), ``failed`` (an exception) or
        ``interrupted`` (the stream just ended).
        """
        open_runs: set[str] = set()
        outcome: tuple[RunStatus, str | None] = ("interrupted", "the event stream ended early")
        try:
            async for event in events:
                if not isinstance(event, (MemberDelta, ArbiterDelta)):
                    written = await asyncio.to_thread(self.record, event, strict=strict)
                    if isinstance(event, RunStarted) and written:
                        open_runs.add(event.run_id)
                    elif isinstance(event, (RunFinished, RunFailed)):
                        open_runs.discard(event.run_id)
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            outcome = ("cancelled", None)
            raise
        except BaseException as error:
            outcome = ("failed", f"{type(error).__name__}: {error}")
            raise
        finally:
            for run_id in open_runs:
                try:
                    # Synchronous on purpose: a cancelled or closing generator cannot await.
                    self.close_run(run_id, outcome[0], error=outcome[1])
                except Exception:
                    logger.warning("run log %s: could not close run %s", self.path, run_id)

    def _record_run_started(self, db: sqlite_utils.Database, event: RunStarted) -> None:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", [event.run_id]).fetchone():
            raise ValueError(f"run {event.run_id!r} is already in the run log")
        conversation_id = event.conversation_id or event.run_id
        db.execute(
            "INSERT OR IGNORE INTO conversations (id, created_at, title, config)"
            " VALUES (?, ?, ?, ?)",
            [conversation_id, event.at, _title(event.prompt), _json(event.config)],
        )
        mode, arbiter = _mode_and_arbiter(event.config)
        db.table("runs").insert(
            {
                "id": event.run_id,
                "conversation_id": conversation_id,
                "turn": event.turn,
                "prompt": event.prompt,
                "config": _json(event.config),
                "mode": mode,
                "arbiter": arbiter,
                "status": "running",
                "started_at": event.at,
                "iteration_count": 0,
                "owner_host": self._host,
                "owner_pid": self._pid,
                "owner_started_at": self._start_token,
                "heartbeat_at": _now(),
            }
        )
        self._append_event(db, event)

    def _record_event(self, db: sqlite_utils.Database, event: Event) -> None:
        run_id = event.run_id
        if isinstance(event, IterationStarted | IterationFinished):
            db.execute(
                "UPDATE runs SET iteration_count = max(iteration_count, ?) WHERE id = ?",
                [event.iteration, run_id],
            )
        elif isinstance(event, MemberDone):
            db.table("member_responses").insert(
                {
                    "run_id": run_id,
                    "iteration": event.iteration,
                    "model": event.model,
                    "instance": event.instance,
                    "stage": event.stage,
                    "status": "done",
                    "text": event.text,
                    "answer": event.answer,
                    "thought_process": event.thought_process,
                    "reasoning": event.reasoning,
                    "confidence": event.confidence,
                    "latency_ms": event.latency_ms,
                    "first_token_ms": event.first_token_ms,
                    "input_tokens": event.usage.input_tokens,
                    "output_tokens": event.usage.output_tokens,
                    "served_by": event.served_by,
                    "cached": int(event.cached),
                    "attempts": event.attempts,
                    "response_id": event.response_id,
                    "created_at": event.at,
                }
            )
        elif isinstance(event, MemberFailed):
            db.table("member_responses").insert(
                {
                    "run_id": run_id,
                    "iteration": event.iteration,
                    "model": event.model,
                    "instance": event.instance,
                    "stage": event.stage,
                    "status": "failed",
                    "text": event.partial_text,
                    "latency_ms": event.latency_ms,
                    "served_by": event.served_by,
                    "attempts": event.attempts,
                    "error": event.error,
                    "error_type": event.error_type,
                    "created_at": event.at,
                }
            )
        elif isinstance(event, SynthesisReady):
            db.table("arbiter_decisions").insert(
                {
                    "run_id": run_id,
                    "iteration": event.iteration,
                    "model": event.model,
                    "synthesis": event.synthesis,
                    "confidence": event.confidence,
                    "analysis": event.analysis,
                    "dissent": event.dissent,
                    "needs_iteration": int(event.needs_iteration),
                    "refinement_areas": _json(event.refinement_areas),
                    "ranking": _json(event.ranking),
                    "parse_ok": int(event.parse_ok),
                    "warnings": _json(event.warnings),
                    "raw": event.raw,
                    "latency_ms": event.latency_ms,
                    "input_tokens": event.usage.input_tokens,
                    "output_tokens": event.usage.output_tokens,
                    "served_by": event.served_by,
                    "cached": int(event.cached),
                    "created_at": event.at,
                }
            )
            db.execute(
                "UPDATE runs SET final_synthesis = ?, final_confidence = ?,"
                " iteration_count = max(iteration_count, ?), arbiter = coalesce(arbiter, ?)"
                " WHERE id = ?",
                [event.synthesis, event.confidence, event.iteration, event.model, run_id],
            )
        elif isinstance(event, RunFinished):
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, iteration_count = ?,"
                " final_confidence = coalesce(?, final_confidence), error = NULL WHERE id = ?",
                [event.status, event.at, event.iterations, event.confidence, run_id],
            )
        elif isinstance(event, RunFailed):
            db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                [event.at, event.reason, run_id],
            )
        if not isinstance(event, (RunFinished, RunFailed)):
            self._touch(db, [run_id])
        self._append_event(db, event)

    def _append_event(self, db: sqlite_utils.Database, event: Event) -> None:
        row = db.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run_id = ?", [event.run_id]
        ).fetchone()
        db.execute(
            "INSERT INTO events (run_id, seq, kind, json) VALUES (?, ?, ?, ?)",
            [event.run_id, row[0], event.kind, event.model_dump_json()],
        )

    def _touch(self, db: sqlite_utils.Database, run_ids: Iterable[str]) -> None:
        """Refresh the heartbeat of this process's runs; a run another process wrongly marked
        ``interrupted`` (a stale heartbeat after a suspend, say) is running again."""
        now = _now()
        for run_id in run_ids:
            db.execute(
                "UPDATE runs SET heartbeat_at = ?,"
                " status = CASE status WHEN 'interrupted' THEN 'running' ELSE status END,"
                " finished_at = CASE status WHEN 'interrupted' THEN NULL ELSE finished_at END,"
                " error = CASE status WHEN 'interrupted' THEN NULL ELSE error END"
                " WHERE id = ? AND status IN ('running', 'interrupted')"
                " AND owner_host = ? AND owner_pid = ? AND owner_started_at IS ?",
                [now, run_id, self._host, self._pid, self._start_token],
            )

    def close_run(self, run_id: str, status: RunStatus, *, error: str | None = None) -> bool:
        """Close a still-``running`` run with ``status`` (for a stream that stopped without a
        terminal event). Returns whether a run was changed; closed runs are left alone."""
        if status == "running":
            raise ValueError("close_run needs a final status, not 'running'")
        changed = self._write(
            lambda db: (
                db.execute(
                    "UPDATE runs SET status = ?, finished_at = ?, error = coalesce(?, error)"
                    " WHERE id = ? AND status = 'running'",
                    [status, _now(), error, run_id],
                ).rowcount
            ),
            what="close_run",
        )
        with self._lock:
            self._active.discard(run_id)
        return bool(changed)

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

    # -- reading ------------------------------------------------------------------------------
    def list_runs(
        self, limit: int | None = None, conversation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows of ``runs`` (``config`` decoded), newest first; optionally one conversation's."""
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if conversation_id is not None:
            sql += " WHERE conversation_id = ?"
            params.append(conversation_id)
        sql += " ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_decode(row, _RUN_JSON_COLUMNS) for row in self._read(sql, params)]

    def get_run_row(self, run_id: str) -> dict[str, Any] | None:
        """The ``runs`` row of ``run_id`` (``config`` decoded), or None."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", [run_id])
        return _decode(rows[0], _RUN_JSON_COLUMNS) if rows else None

    def get_events(self, run_id: str) -> list[Event]:
        """The recorded events of ``run_id`` in order (no deltas); empty if unknown."""
        rows = self._read("SELECT json FROM events WHERE run_id = ? ORDER BY seq", [run_id])
        return [parse_event(row["json"]) for row in rows]

    def member_responses(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``member_responses`` (one run's, or all) in recording order."""
        if run_id is None:
            return self._read("SELECT * FROM member_responses ORDER BY id")
        return self._read("SELECT * FROM member_responses WHERE run_id = ? ORDER BY id", [run_id])

    def arbiter_decisions(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``arbiter_decisions`` (JSON columns decoded) in recording order."""
        if run_id is None:
            rows = self._read("SELECT * FROM arbiter_decisions ORDER BY id")
        else:
            rows = self._read(
                "SELECT * FROM arbiter_decisions WHERE run_id = ? ORDER BY id", [run_id]
            )
        return [_decode(row, _DECISION_JSON_COLUMNS) for row in rows]

    def member_frame_rows(self) -> list[dict[str, Any]]:
        """Every member response joined with its run's columns (for ``runs.to_pandas``)."""
        return self._read(
            """
            SELECT m.run_id, r.conversation_id, r.turn, r.prompt, r.mode, r.arbiter,
                   r.status AS run_status, r.started_at AS run_started_at,
                   r.finished_at AS run_finished_at, r.iteration_count,
                   r.final_confidence, r.error AS run_error,
                   m.iteration, m.model, m.instance, m.stage, m.status, m.text, m.answer,
                   m.thought_process, m.reasoning, m.confidence, m.latency_ms,
                   m.first_token_ms, m.input_tokens, m.output_tokens, m.served_by, m.cached,
                   m.attempts, m.error, m.error_type, m.response_id, m.created_at
            FROM member_responses m LEFT JOIN runs r ON r.id = m.run_id
            ORDER BY r.started_at, m.run_id, m.id
            """
        )

    def delete_run(self, run_id: str) -> bool:
        """Remove every row of ``run_id``; drop its conversation if no run is left in it.
        Returns whether the run existed."""

        def delete(db: sqlite_utils.Database) -> bool:
            row = db.execute("SELECT conversation_id FROM runs WHERE id = ?", [run_id]).fetchone()
            for table in ("member_responses", "arbiter_decisions", "events"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            db.execute("DELETE FROM runs WHERE id = ?", [run_id])
            if row is not None:
                db.execute(
                    "DELETE FROM conversations WHERE id = ?"
                    " AND NOT EXISTS (SELECT 1 FROM runs WHERE conversation_id = ?)",
                    [row[0], row[0]],
                )
            return row is not None

        existed = self._write(delete, what="delete_run")
        with self._lock:
            self._active.discard(run_id)
        return existed

    def conversation_history(
        self, conversation_id: str
    ) -> dict[tuple[str, int], list[tuple[str, str]]]:
        """Each member's own history in a conversation.

        Maps ``(model, instance)`` to ``[(the turn's user prompt, that member's final
        successful answer text in that turn), ...]`` in turn order, for completed runs only (a
        failed, cancelled or interrupted turn adds nothing, as in a live conversation). A
        member's answer in a run is the full ``text`` of its last ``member_done`` of stage
        ``answer``; a turn where it has none is left out of its list. One member's answer never
        appears in another's.
        """
        rows = self._read(
            """
            SELECT r.id AS run_id, r.prompt, m.model, m.instance, m.text
            FROM runs r
            JOIN member_responses m ON m.run_id = r.id
            WHERE r.conversation_id = ? AND r.status = 'completed'
              AND m.status = 'done' AND m.stage = 'answer'
            ORDER BY r.turn, r.started_at, r.rowid, m.iteration, m.id
            """,
            [conversation_id],
        )
        # Rows come in run (turn) order; a later row of the same run and member replaces the
        # earlier one in place, so each key keeps its run's position.
        last: dict[tuple[str, str, int], tuple[str, str]] = {}
        for row in rows:
            last[(row["run_id"], row["model"], int(row["instance"]))] = (
                row["prompt"],
                row["text"] or "",
            )
        history: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for (_run_id, model, instance), turn in last.items():
            history.setdefault((model, instance), []).append(turn)
        return history

    def latest_conversation_id(self) -> str | None:
        """The conversation of the most recently started run (None when the log is empty)."""
        rows = self._read(
            "SELECT conversation_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1"
        )
        return rows[0]["conversation_id"] if rows else None

    def list_conversations(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Conversations, most recently active first, with ``run_count`` and ``last_run_at``."""
        sql = """
            SELECT c.id, c.created_at, c.title, c.config,
                   count(r.id) AS run_count, max(r.started_at) AS last_run_at
            FROM conversations c LEFT JOIN runs r ON r.conversation_id = c.id
            GROUP BY c.id
            ORDER BY coalesce(max(r.started_at), c.created_at) DESC, c.rowid DESC
        """
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_decode(row, ("config",)) for row in self._read(sql, params)]
