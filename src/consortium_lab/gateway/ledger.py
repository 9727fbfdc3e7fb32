"""The gateway service's ledger: usage, quota policies and access rules, kept across restarts.

The gateway service (:mod:`consortium_lab.service.app`) keeps three things here:

usage
    One :class:`UsageRecord` per chat request it answered or refused: when, who, which model,
    which model served it, tokens, cost, whether it came from the cache, the outcome (``ok`` or
    a ``CallFailed.kind`` such as ``quota`` or ``server_error``) and the latency. Never the
    prompt or the answer: the admin analytics read aggregates (:meth:`Ledger.usage`), not
    what people asked.
quota policies
    A :class:`~consortium_lab.gateway.quotas.QuotaPolicy` per *subject*: ``default``,
    ``user:<name>`` or ``group:<name>``.
access rules (ACL)
    Model patterns per subject: ``*`` (everyone), ``user:<name>`` or ``group:<name>``; a
    pattern is a model id or a glob (``gpt-4o*``, ``*``).

Policies and rules set here are *overrides*: the service starts from the baseline in its
configuration file, and an entry here for the same subject replaces the baseline's (deleting it
brings the baseline back). How the entries that apply to one user combine is decided by
:class:`Rules`.

Two backends, chosen by :func:`open_ledger`:

- :class:`SQLiteLedger` (the default): one SQLite file in WAL mode, written through
  sqlite-utils. The quota counters of :class:`~consortium_lab.gateway.quotas.QuotaManager` go into
  the
  same file (``sqlite:///<file>``), so a restart keeps what everybody used.
- :class:`RedisLedger`: for several gateway replicas; usage is a Redis stream (capped), policies
  and rules are hashes, the quota counters use the same Redis server.

Every change of policies or rules bumps :meth:`Ledger.revision`, which the service checks on
every request, so a change made through one replica's admin API applies to the next request on
every replica.

The service adds usage with :meth:`Ledger.record_later`, which never blocks: a writer thread
stores what is queued in one transaction (one Redis round trip) and reports each record stored
through a callback; the service answers the request only then, so a record is visible to every
replica once its request is answered, with one transaction per batch rather than a worker
thread and a transaction per request. Reading usage through the ledger (:meth:`Ledger.records`,
:meth:`Ledger.usage`) writes what is queued first, and :meth:`Ledger.close` (or the
interpreter's normal exit) writes the rest, so no record is lost on a normal shutdown; a
backend that fails is tried again, and at the end the records that could not be written are
logged in full.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consortium_lab.gateway.flusher import start_flusher
from consortium_lab.gateway.quotas import QuotaPolicy

__all__ = [
    "GROUP_BY",
    "Ledger",
    "RedisLedger",
    "Rules",
    "SQLiteLedger",
    "UsageRecord",
    "check_acl_subject",
    "check_quota_subject",
    "open_ledger",
]

logger = logging.getLogger(__name__)

GROUP_BY = ("user", "model", "served_by", "outcome", "day")
"""The fields :meth:`Ledger.usage` can group by (``day`` is the UTC date of the call)."""

_NAME = re.compile(r"^[^\s:][^\s]{0,254}$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{kind} name {name!r} is not valid (1-255 characters, no spaces, not starting "
            "with ':')"
        )
    return name


def _check_subject(subject: str, *, everyone: str, what: str) -> str:
    if subject == everyone:
        return subject
    kind, sep, name = subject.partition(":")
    if not sep or kind not in ("user", "group"):
        raise ValueError(
            f"{what} subject must be '{everyone}', 'user:<name>' or 'group:<name>' "
            f"(got {subject!r})"
        )
    _check_name(kind, name)
    return subject


def check_quota_subject(subject: str) -> str:
    """Validate a quota subject: ``default``, ``user:<name>`` or ``group:<name>``."""
    return _check_subject(subject, everyone="default", what="quota")


def check_acl_subject(subject: str) -> str:
    """Validate an ACL subject: ``*`` (everyone), ``user:<name>`` or ``group:<name>``."""
    return _check_subject(subject, everyone="*", what="ACL")


def _check_patterns(models: Iterable[str]) -> list[str]:
    patterns = list(models)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip() or pattern != pattern.strip():
            raise ValueError(
                f"models: every entry must be a model id or glob pattern (got {pattern!r})"
            )
    return patterns


@dataclass(frozen=True)
class UsageRecord:
    """One chat request the gateway service handled (never its prompt or answer)."""

    time: float
    """When the request arrived (seconds since the epoch)."""
    user: str
    model: str
    """The model the caller asked for."""
    outcome: str
    """``ok``, or the failure kind (``quota``, ``server_error``, ``timeout``, ``cancelled``…)."""
    served_by: str | None = None
    """The model that answered (a fallback or a group's deployment), when one did."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    """In the price table's currency; ``None`` when unknown (never a guessed 0)."""
    cached: bool = False
    latency_ms: float | None = None
    stream: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, with ``time`` also as ISO 8601 (``at``)."""
        data = asdict(self)
        data["at"] = datetime.fromtimestamp(self.time, UTC).isoformat()
        return data


RecordDone = Callable[[BaseException | None], None]
"""Told when a queued record is stored (``None``) or could not be (the error; the record stays
queued), from the thread that wrote it: the ledger's writer thread, or one that read usage or
closed the ledger (both write the queue first)."""


_UNLIMITED = QuotaPolicy()


@dataclass(frozen=True)
class Rules:
    """A snapshot of quota policies and access rules, and how they apply to one user.

    Quotas: a user's own policy if there is one; else, if any of the user's groups has one,
    the most generous combination of those (per field the largest limit, no limit beating any
    limit); else the ``default`` policy; else no limit.

    Access: the most specific rule decides. A user's own rule if there is one; else the union of
    the rules of the user's groups, if any group has one; else the ``*`` rule; else nothing is
    allowed. So ``{"*": ["*"], "user:guest": ["small-*"]}`` lets everybody use every model except
    ``guest``, who may use only the ``small-`` ones.
    """

    quotas: Mapping[str, QuotaPolicy] = field(default_factory=dict)
    acl: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def quota_for(self, user: str, groups: Iterable[str] = ()) -> QuotaPolicy:
        """The quota policy that applies to ``user`` in ``groups``."""
        own = self.quotas.get(f"user:{user}")
        if own is not None:
            return own
        found = [p for g in groups if (p := self.quotas.get(f"group:{g}")) is not None]
        if found:
            merged: dict[str, int | None] = {}
            for name in QuotaPolicy.model_fields:
                values = [getattr(p, name) for p in found]
                merged[name] = None if any(v is None for v in values) else max(values)
            return QuotaPolicy(**merged)
        return self.quotas.get("default") or _UNLIMITED

    def patterns_for(self, user: str, groups: Iterable[str] = ()) -> tuple[str, ...]:
        """The model patterns ``user`` in ``groups`` may use (empty: none)."""
        own = self.acl.get(f"user:{user}")
        if own is not None:
            return tuple(own)
        found = [r for g in groups if (r := self.acl.get(f"group:{g}")) is not None]
        if found:
            return tuple(dict.fromkeys(p for rule in found for p in rule))
        return tuple(self.acl.get("*", ()))

    def allows(self, user: str, groups: Iterable[str], model: str) -> bool:
        """Whether ``user`` in ``groups`` may use ``model``."""
        return any(fnmatch.fnmatchcase(model, p) for p in self.patterns_for(user, groups))


class Ledger(ABC):
    """Usage, quota policies and access rules of one gateway service (thread-safe)."""

    quota_storage: str
    """The ``QuotaManager`` storage URI that keeps quota counters beside this ledger."""

    def __init__(self) -> None:
        self._queue: list[tuple[UsageRecord, RecordDone | None]] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closing = False

    # -- usage --------------------------------------------------------------------------------
    @abstractmethod
    def record(self, record: UsageRecord) -> None:
        """Add one usage record (now, waiting for the backend)."""

    def record_many(self, records: Sequence[UsageRecord]) -> None:
        """Add several usage records, in order (backends do it in one transaction)."""
        for record in records:
            self.record(record)

    def record_later(self, record: UsageRecord, done: RecordDone | None = None) -> None:
        """Queue one usage record for the writer thread, which stores what is queued in one
        transaction (one round trip), as soon as it has finished the previous batch.

        Never waits for the backend, so an event loop may call it. ``done`` (see
        :data:`RecordDone`) is called once: with ``None`` when the record is stored, or with the
        error when storing failed (the record then stays queued and is tried again). Reads
        through this ledger write the queue first, and :meth:`close` writes what is left.

        Raises:
            RuntimeError: the ledger is closed.
        """
        with self._queue_lock:
            if self._closing:
                raise RuntimeError("the ledger is closed")
            self._queue.append((record, done))
            if self._writer is None:
                self._start_writer()
        self._wake.set()

    def flush(self) -> None:
        """Write the queued records now (in order); on failure they stay queued and it raises."""
        with self._flush_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                self.record_many([record for record, _ in batch])
            except BaseException as exc:
                with self._queue_lock:
                    self._queue[:0] = [(record, None) for record, _ in batch]
                _notify(batch, exc)
                raise
            _notify(batch, None)

    def _close_queue(self) -> None:
        """Stop the writer and write what is left (logged in full if that fails)."""
        with self._queue_lock:
            self._closing = True
            writer = self._writer
        if writer is not None:
            self._wake.set()
            writer.join()
        try:
            self.flush()
        except Exception:
            logger.exception(
                "usage records could not be written to the ledger: %s",
                json.dumps([record.to_dict() for record, _ in self._queue]),
            )

    def _start_writer(self) -> None:
        self._writer = start_flusher(
            self,
            self._wake,
            name="ledger-writer",
            what="usage records",
            done=lambda ledger: ledger._closing,
            on_exit=lambda ledger: ledger._close_queue(),
        )

    @abstractmethod
    def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> list[UsageRecord]:
        """Raw usage records, newest first (at most ``limit``)."""

    @abstractmethod
    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        model: str | None = None,
        group_by: Sequence[str] = ("user", "model"),
    ) -> list[dict[str, Any]]:
        """Usage aggregates, one row per group (sorted by the group fields).

        Each row has the ``group_by`` fields (see :data:`GROUP_BY`) and: ``calls``, ``ok``,
        ``failed``, ``cached``, ``input_tokens``, ``output_tokens``, ``cost`` (``None`` when no
        call in the group had a known cost) and ``latency_ms_avg`` (of successful calls that
        were not served from the cache; ``None`` when there were none). ``since``/``until``
        bound the time (seconds since the epoch; ``until`` exclusive).
        """

    # -- policies and rules -----------------------------------------------------------------
    @abstractmethod
    def quota_policies(self) -> dict[str, QuotaPolicy]:
        """The quota policies set here, by subject."""

    @abstractmethod
    def set_quota(self, subject: str, policy: QuotaPolicy | None) -> None:
        """Set (or with ``None`` delete) the policy of ``subject``."""

    @abstractmethod
    def acl_rules(self) -> dict[str, list[str]]:
        """The access rules set here, by subject."""

    @abstractmethod
    def set_acl(self, subject: str, models: Sequence[str] | None) -> None:
        """Set (or with ``None`` delete) the model patterns of ``subject``."""

    @abstractmethod
    def revision(self) -> int:
        """A number that changes whenever a policy or rule changes."""

    def revision_nowait(self) -> int | None:
        """:meth:`revision` if it can be read without waiting (an event loop may call this);
        ``None`` when it cannot, then call :meth:`revision` from a worker thread."""
        return None

    @abstractmethod
    def check(self) -> bool:
        """Whether the backend answers."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def rules(
        self,
        base_quotas: Mapping[str, QuotaPolicy] | None = None,
        base_acl: Mapping[str, Sequence[str]] | None = None,
    ) -> Rules:
        """The baseline (from the configuration) with this ledger's overrides on top."""
        return Rules(
            quotas={**(base_quotas or {}), **self.quota_policies()},
            acl={**{k: list(v) for k, v in (base_acl or {}).items()}, **self.acl_rules()},
        )


def _notify(
    batch: Sequence[tuple[UsageRecord, RecordDone | None]], error: BaseException | None
) -> None:
    for _, done in batch:
        if done is not None:
            try:
                done(error)
            except Exception:
                logger.exception("a usage record's done callback failed")


def _check_group_by(group_by: Sequence[str]) -> list[str]:
    fields = list(dict.fromkeys(group_by))
    for name in fields:
        if name not in GROUP_BY:
            raise ValueError(f"group_by: {name!r} is not one of {', '.join(GROUP_BY)}")
    return fields


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def aggregate(records: Iterable[UsageRecord], group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Fold usage records into the rows :meth:`Ledger.usage` returns (used by backends that
    cannot aggregate in a query)."""
    fields = _check_group_by(group_by)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    latency: dict[tuple[Any, ...], list[float]] = {}
    for rec in records:
        values = {
            "user": rec.user,
            "model": rec.model,
            "served_by": rec.served_by,
            "outcome": rec.outcome,
            "day": _day(rec.time),
        }
        key = tuple(values[f] for f in fields)
        row = groups.get(key)
        if row is None:
            row = {f: values[f] for f in fields}
            row.update(
                calls=0, ok=0, failed=0, cached=0, input_tokens=0, output_tokens=0, cost=None
            )
            groups[key] = row
        row["calls"] += 1
        row["ok" if rec.outcome == "ok" else "failed"] += 1
        row["cached"] += int(rec.cached)
        row["input_tokens"] += rec.input_tokens or 0
        row["output_tokens"] += rec.output_tokens or 0
        if rec.cost is not None:
            row["cost"] = (row["cost"] or 0.0) + rec.cost
        if rec.outcome == "ok" and not rec.cached and rec.latency_ms is not None:
            latency.setdefault(key, []).append(rec.latency_ms)
    rows = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        row = groups[key]
        times = latency.get(key)
        row["latency_ms_avg"] = sum(times) / len(times) if times else None
        rows.append(row)
    return rows


# -- SQLite ---------------------------------------------------------------------------------
_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_usage (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    user TEXT NOT NULL,
    model TEXT NOT NULL,
    served_by TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost REAL,
    cached INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    latency_ms REAL,
    stream INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS gateway_usage_time ON gateway_usage (time);
CREATE INDEX IF NOT EXISTS gateway_usage_user_time ON gateway_usage (user, time);
CREATE TABLE IF NOT EXISTS gateway_quotas (
    subject TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_acl (
    subject TEXT PRIMARY KEY,
    models TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_USAGE_COLUMNS = (
    "time",
    "user",
    "model",
    "served_by",
    "input_tokens",
    "output_tokens",
    "cost",
    "cached",
    "outcome",
    "latency_ms",
    "stream",
)


_INSERT_USAGE = (
    f"INSERT INTO gateway_usage ({', '.join(_USAGE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _USAGE_COLUMNS)})"
)
_REVISION = "SELECT value FROM gateway_meta WHERE key = 'revision'"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _filters(
    since: float | None, until: float | None, user: str | None, model: str | None
) -> tuple[str, list[Any]]:
    where, params = [], []
    for clause, value in (
        ("time >= ?", since),
        ("time < ?", until),
        ("user = ?", user),
        ("model = ?", model),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(where)) if where else "", params


class SQLiteLedger(Ledger):
    """The ledger in one SQLite file (WAL mode), written through sqlite-utils.

    Every write is one ``BEGIN IMMEDIATE`` transaction, so several processes may share the file
    (each waits up to ``timeout`` seconds for another's write). The quota counters live in the
    same file (:attr:`quota_storage` is ``sqlite:///<file>``).
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        import sqlite_utils

        super().__init__()
        self.path = Path(path).expanduser().absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._lock = threading.Lock()
        conn = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self.db = sqlite_utils.Database(conn)
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Switching to WAL needs the file alone for a moment: retry while another
                # process (a replica, the quota counters) opens it at the same time.
                self.db.enable_wal()
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SQLITE_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.quota_storage = f"sqlite:///{self.path}"
        # A second connection for revision_nowait(): a WAL reader never waits for a writer,
        # and it fails at once (timeout 0) rather than wait for anything else.
        self._reader = sqlite3.connect(
            str(self.path), timeout=0, isolation_level=None, check_same_thread=False
        )
        self._reader_lock = threading.Lock()

    def _write(self, sql: str, params: Sequence[Any] = (), *, bump: bool = False) -> None:
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(sql, params)
                if bump:
                    conn.execute(
                        "INSERT INTO gateway_meta (key, value) VALUES ('revision', 1)"
                        " ON CONFLICT (key) DO UPDATE SET value = value + 1"
                    )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    def record(self, record: UsageRecord) -> None:
        self.record_many([record])

    def record_many(self, records: Sequence[UsageRecord]) -> None:
        rows = [
            (
                r.time,
                r.user,
                r.model,
                r.served_by,
                r.input_tokens,
                r.output_tokens,
                r.cost,
                int(r.cached),
                r.outcome,
                r.latency_ms,
                int(r.stream),
            )
            for r in records
        ]
        if not rows:
            return
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT_USAGE, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> list[UsageRecord]:
        self.flush()
        where, params = _filters(since, until, user, model)
        rows = self._rows(
            f"SELECT {', '.join(_USAGE_COLUMNS)} FROM gateway_usage{where}"
            " ORDER BY time DESC, id DESC LIMIT ?",
            [*params, int(limit)],
        )
        return [
            UsageRecord(**{**r, "cached": bool(r["cached"]), "stream": bool(r["stream"])})
            for r in rows
        ]

    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        model: str | None = None,
        group_by: Sequence[str] = ("user", "model"),
    ) -> list[dict[str, Any]]:
        fields = _check_group_by(group_by)
        self.flush()
        exprs = {f: ("date(time, 'unixepoch')" if f == "day" else f) for f in fields}
        select = [f"{expr} AS {name}" for name, expr in exprs.items()]
        where, params = _filters(since, until, user, model)
        group = f" GROUP BY {', '.join(exprs.values())}" if fields else ""
        order = f" ORDER BY {', '.join(exprs.values())}" if fields else ""
        sql = (
            f"SELECT {', '.join([*select, ''])}"
            "COUNT(*) AS calls,"
            " SUM(outcome = 'ok') AS ok,"
            " SUM(outcome != 'ok') AS failed,"
            " SUM(cached) AS cached,"
            " COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            " SUM(cost) AS cost,"
            " AVG(CASE WHEN outcome = 'ok' AND NOT cached THEN latency_ms END) AS latency_ms_avg"
            f" FROM gateway_usage{where}{group}{order}"
        )
        rows = self._rows(sql, params)
        if not fields and rows and rows[0]["calls"] == 0:
            return []
        for row in rows:
            for name in ("ok", "failed", "cached"):
                row[name] = int(row[name] or 0)
        return rows

    def quota_policies(self) -> dict[str, QuotaPolicy]:
        rows = self._rows("SELECT subject, policy FROM gateway_quotas")
        return {r["subject"]: QuotaPolicy.model_validate_json(r["policy"]) for r in rows}

    def set_quota(self, subject: str, policy: QuotaPolicy | None) -> None:
        check_quota_subject(subject)
        if policy is None:
            self._write("DELETE FROM gateway_quotas WHERE subject = ?", [subject], bump=True)
        else:
            self._write(
                "INSERT INTO gateway_quotas (subject, policy, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET policy = excluded.policy,"
                " updated_at = excluded.updated_at",
                [subject, policy.model_dump_json(), _now_iso()],
                bump=True,
            )

    def acl_rules(self) -> dict[str, list[str]]:
        rows = self._rows("SELECT subject, models FROM gateway_acl")
        return {r["subject"]: list(json.loads(r["models"])) for r in rows}

    def set_acl(self, subject: str, models: Sequence[str] | None) -> None:
        check_acl_subject(subject)
        if models is None:
            self._write("DELETE FROM gateway_acl WHERE subject = ?", [subject], bump=True)
        else:
            self._write(
                "INSERT INTO gateway_acl (subject, models, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET models = excluded.models,"
                " updated_at = excluded.updated_at",
                [subject, json.dumps(_check_patterns(models)), _now_iso()],
                bump=True,
            )

    def revision(self) -> int:
        rows = self._rows("SELECT value FROM gateway_meta WHERE key = 'revision'")
        return int(rows[0]["value"]) if rows else 0

    def revision_nowait(self) -> int | None:
        if not self._reader_lock.acquire(blocking=False):
            return None
        try:
            row = self._reader.execute(_REVISION).fetchone()
        except sqlite3.Error:
            return None
        finally:
            self._reader_lock.release()
        return int(row[0]) if row else 0

    def check(self) -> bool:
        try:
            self._rows("SELECT 1 AS one")
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        self._close_queue()
        with self._reader_lock:
            self._reader.close()
        with self._lock:
            self.db.conn.close()


# -- Redis ----------------------------------------------------------------------------------
class RedisLedger(Ledger):
    """The ledger in Redis, shared by several gateway replicas (``pip install redis``).

    Keys (all under ``prefix``): ``usage`` (a stream of records, trimmed to about
    ``max_records``), ``quotas`` and ``acl`` (hashes of JSON by subject) and ``revision`` (a
    counter). Quota counters use the same server through ``limits``' Redis storage. Usage
    aggregates are computed here from the stream (a ``since`` bound skips older entries), so
    keep ``max_records`` in proportion.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "consortium_lab:ledger:",
        max_records: int = 1_000_000,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ImportError(
                "the Redis ledger needs the 'redis' package: pip install 'consortium-lab[redis]'"
            ) from exc
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.max_records = max_records
        # Typed as Any: redis-py's stubs cannot tell that decode_responses gives str.
        self._redis: Any = redis.Redis.from_url(url, decode_responses=True)
        self.quota_storage = url

    def _key(self, name: str) -> str:
        return self.prefix + name

    def record(self, record: UsageRecord) -> None:
        fields = {"record": json.dumps(asdict(record))}
        self._redis.xadd(self._key("usage"), fields, maxlen=self.max_records, approximate=True)

    def record_many(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            fields = {"record": json.dumps(asdict(record))}
            pipe.xadd(self._key("usage"), fields, maxlen=self.max_records, approximate=True)
        pipe.execute()

    def _scan(
        self,
        since: float | None,
        until: float | None,
        user: str | None,
        model: str | None,
        *,
        reverse: bool = False,
    ) -> Iterable[UsageRecord]:
        # Stream ids are the Redis server's clock in ms. They narrow a ``since`` scan, with an
        # hour's margin for replicas whose clocks differ from the server's; the records' own
        # times decide what matches.
        low = "-" if since is None else str(max(0, int((since - 3600) * 1000)))
        high = "+"
        cursor_low, cursor_high = low, high
        while True:
            if reverse:
                batch = self._redis.xrevrange(
                    self._key("usage"), max=cursor_high, min=low, count=1000
                )
            else:
                batch = self._redis.xrange(self._key("usage"), min=cursor_low, max=high, count=1000)
            if not batch:
                return
            for _entry_id, fields in batch:
                rec = UsageRecord(**json.loads(fields["record"]))
                if since is not None and rec.time < since:
                    continue
                if until is not None and rec.time >= until:
                    continue
                if user is not None and rec.user != user:
                    continue
                if model is not None and rec.model != model:
                    continue
                yield rec
            last = batch[-1][0]
            if reverse:
                cursor_high = "(" + last
            else:
                cursor_low = "(" + last

    def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> list[UsageRecord]:
        self.flush()
        found: list[UsageRecord] = []
        for rec in self._scan(since, until, user, model, reverse=True):
            found.append(rec)
            if len(found) >= limit:
                break
        return found

    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        model: str | None = None,
        group_by: Sequence[str] = ("user", "model"),
    ) -> list[dict[str, Any]]:
        _check_group_by(group_by)
        self.flush()
        return aggregate(self._scan(since, until, user, model), group_by)

    def quota_policies(self) -> dict[str, QuotaPolicy]:
        raw: dict[str, str] = self._redis.hgetall(self._key("quotas"))
        return {k: QuotaPolicy.model_validate_json(v) for k, v in raw.items()}

    def set_quota(self, subject: str, policy: QuotaPolicy | None) -> None:
        check_quota_subject(subject)
        pipe = self._redis.pipeline(transaction=True)
        if policy is None:
            pipe.hdel(self._key("quotas"), subject)
        else:
            pipe.hset(self._key("quotas"), subject, policy.model_dump_json())
        pipe.incr(self._key("revision"))
        pipe.execute()

    def acl_rules(self) -> dict[str, list[str]]:
        raw: dict[str, str] = self._redis.hgetall(self._key("acl"))
        return {k: list(json.loads(v)) for k, v in raw.items()}

    def set_acl(self, subject: str, models: Sequence[str] | None) -> None:
        check_acl_subject(subject)
        pipe = self._redis.pipeline(transaction=True)
        if models is None:
            pipe.hdel(self._key("acl"), subject)
        else:
            pipe.hset(self._key("acl"), subject, json.dumps(_check_patterns(models)))
        pipe.incr(self._key("revision"))
        pipe.execute()

    def revision(self) -> int:
        value = self._redis.get(self._key("revision"))
        return int(value) if value is not None else 0

    def check(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._close_queue()
        self._redis.close()


def open_ledger(spec: str | Path) -> Ledger:
    """A ledger from a file path (SQLite) or a ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    text = str(spec)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisLedger(text)
    return SQLiteLedger(text)
