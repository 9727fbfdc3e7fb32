"""The ledger's interface and what every backend shares: the write queue, validation, parsing.

A backend (:class:`~consortium_lab.gateway.ledger.sqlite.SQLiteLedger`,
:class:`~consortium_lab.gateway.ledger.redis.RedisLedger`) only stores and reads: records in
batches, the usage records a :class:`~consortium_lab.gateway.ledger.usage.UsageFilter`
selects, and the policy and rule entries as JSON text by subject. Checking subjects and
patterns, (de)serialising policies and rules, writing the queue before a read and the writer
thread are done here, once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from consortium_lab.gateway.flusher import Flusher
from consortium_lab.gateway.ledger.audit import AuditEntry, chain_entry
from consortium_lab.gateway.ledger.rules import (
    Rules,
    check_acl_subject,
    check_patterns,
    check_quota_subject,
)
from consortium_lab.gateway.ledger.usage import UsageFilter, UsageRecord, check_group_by
from consortium_lab.gateway.quotas import QuotaPolicy

__all__ = ["EntryKind", "Ledger", "RecordDone"]

logger = logging.getLogger(__name__)

RecordDone = Callable[[BaseException | None], None]
"""Told when a queued record is stored (``None``) or could not be (the error; the record stays
queued), from the thread that wrote it: the ledger's writer thread, or one that read usage or
closed the ledger (both write the queue first)."""

EntryKind = Literal["quotas", "acl", "settings"]
"""The kinds of override a ledger keeps by subject: quota policies, access rules, and settings
an admin changed at run time (the chat's default consortium, the price table) by name."""


class Ledger(ABC):
    """Usage, quota policies and access rules of one gateway service (thread-safe)."""

    quota_storage: str
    """The ``QuotaManager`` storage URI that keeps quota counters beside this ledger."""

    def __init__(self) -> None:
        self._queue: list[tuple[UsageRecord, RecordDone | None]] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher = Flusher(
            self,
            lock=self._queue_lock,
            name="ledger-writer",
            what="usage records",
            lost=lambda ledger: json.dumps([record.to_dict() for record, _ in ledger._queue]),
        )

    # -- what a backend implements ----------------------------------------------------------
    @abstractmethod
    def record_many(self, records: Sequence[UsageRecord]) -> None:
        """Add several usage records, in order, in one transaction (now, waiting for it)."""

    @abstractmethod
    def _select(self, where: UsageFilter, limit: int) -> list[UsageRecord]:
        """The records ``where`` selects, newest first (at most ``limit``)."""

    @abstractmethod
    def _aggregate(self, where: UsageFilter, fields: list[str]) -> list[dict[str, Any]]:
        """The rows of :meth:`usage` for the checked ``fields``."""

    @abstractmethod
    def _entries(self, kind: EntryKind) -> dict[str, str]:
        """The stored entries of ``kind`` by subject, as JSON text."""

    @abstractmethod
    def _set_entry(self, kind: EntryKind, subject: str, value: str | None) -> None:
        """Store (or with ``None`` delete) one entry and bump the revision, in one transaction."""

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
    def _disconnect(self) -> None:
        """Release the backend's connections."""

    # Retention, data rights and the audit log. Not abstract, so a backend written before
    # them still loads; the two shipped backends implement all of them.
    def _purge_usage(self, before: float) -> int:
        """Delete the usage records older than ``before``; how many were deleted."""
        raise NotImplementedError(f"{type(self).__name__} cannot purge usage records")

    def _rename_user(self, user: str, alias: str) -> int:
        """Replace ``user`` by ``alias`` in every usage record; how many were changed."""
        raise NotImplementedError(f"{type(self).__name__} cannot rename users")

    def _append_audit(self, make: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        """Store ``make(last entry)`` as the next entry, atomically with reading the last."""
        raise NotImplementedError(f"{type(self).__name__} keeps no audit log")

    def _first_seen(self, key: str) -> bool:
        """Remember ``key``; whether this was the first time (across replicas and restarts)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no audit log")

    def audit_entries(self, *, after: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """The audit entries after sequence number ``after``, oldest first."""
        raise NotImplementedError(f"{type(self).__name__} keeps no audit log")

    # -- audit ------------------------------------------------------------------------------
    def audit(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry to the audit log (chained to the last one); the stored entry."""
        now = time.time()
        return self._append_audit(
            lambda last: chain_entry(
                last, time=now, actor=actor, action=action, target=target, detail=detail
            )
        )

    def audit_once(
        self,
        key: str,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry | None:
        """:meth:`audit`, only the first time ``key`` is seen by any replica (else ``None``)."""
        if not self._first_seen(key):
            return None
        return self.audit(actor, action, target, detail)

    # -- retention and data rights ---------------------------------------------------------
    def purge_usage(self, before: float) -> int:
        """Delete the usage records older than ``before`` (seconds since the epoch) and give
        the space back (SQLite: ``VACUUM``; Redis: the stream trimmed); how many went."""
        self.flush()
        return self._purge_usage(float(before))

    def rename_user(self, user: str, alias: str) -> int:
        """Replace ``user`` by ``alias`` in every usage record (totals stay as they were);
        how many records changed."""
        if not user or not alias or user == alias:
            raise ValueError("rename_user needs two different, non-empty names")
        self.flush()
        return self._rename_user(user, alias)

    # -- usage --------------------------------------------------------------------------------
    def record(self, record: UsageRecord) -> None:
        """Add one usage record (now, waiting for the backend)."""
        self.record_many([record])

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
            if self._flusher.closed:
                raise RuntimeError("the ledger is closed")
            self._queue.append((record, done))
        self._flusher.wake()

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
        self.flush()
        return self._select(UsageFilter(since, until, user, model), int(limit))

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

        Each row has the ``group_by`` fields (see
        :data:`~consortium_lab.gateway.ledger.usage.GROUP_BY`) and: ``calls``, ``ok``,
        ``failed``, ``cached``, ``input_tokens``, ``output_tokens``, ``cost`` (``None`` when no
        call in the group had a known cost) and ``latency_ms_avg`` (of successful calls that
        were not served from the cache; ``None`` when there were none). ``since``/``until``
        bound the time (seconds since the epoch; ``until`` exclusive).
        """
        fields = check_group_by(group_by)
        self.flush()
        return self._aggregate(UsageFilter(since, until, user, model), fields)

    # -- policies and rules -----------------------------------------------------------------
    def quota_policies(self) -> dict[str, QuotaPolicy]:
        """The quota policies set here, by subject."""
        entries = self._entries("quotas")
        return {subject: QuotaPolicy.model_validate_json(v) for subject, v in entries.items()}

    def set_quota(self, subject: str, policy: QuotaPolicy | None) -> None:
        """Set (or with ``None`` delete) the policy of ``subject``."""
        check_quota_subject(subject)
        value = None if policy is None else policy.model_dump_json()
        self._set_entry("quotas", subject, value)

    def acl_rules(self) -> dict[str, list[str]]:
        """The access rules set here, by subject."""
        return {subject: list(json.loads(v)) for subject, v in self._entries("acl").items()}

    def set_acl(self, subject: str, models: Sequence[str] | None) -> None:
        """Set (or with ``None`` delete) the model patterns of ``subject``."""
        check_acl_subject(subject)
        value = None if models is None else json.dumps(check_patterns(models))
        self._set_entry("acl", subject, value)

    def settings(self) -> dict[str, Any]:
        """The run-time settings set here (``defaults``, ``prices``), by name, as JSON values."""
        return {name: json.loads(v) for name, v in self._entries("settings").items()}

    def set_setting(self, name: str, value: Any) -> None:
        """Set (or with ``None`` delete) the run-time setting ``name`` (a JSON value)."""
        self._set_entry("settings", name, None if value is None else json.dumps(value))

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

    def close(self) -> None:
        """Write the queued records, then release connections.

        Records that cannot be written are logged in full (the flusher does it), not raised:
        closing must release the connections anyway.
        """
        with contextlib.suppress(Exception):
            self._flusher.close()
        self._disconnect()


def _notify(
    batch: Sequence[tuple[UsageRecord, RecordDone | None]], error: BaseException | None
) -> None:
    for _, done in batch:
        if done is not None:
            try:
                done(error)
            except Exception:
                logger.exception("a usage record's done callback failed")
