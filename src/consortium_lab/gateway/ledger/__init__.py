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

from pathlib import Path

from consortium_lab.gateway.ledger.audit import AuditBroken, AuditEntry, verify
from consortium_lab.gateway.ledger.base import Ledger, RecordDone
from consortium_lab.gateway.ledger.redis import RedisLedger, RedisUnreachable, mask_url
from consortium_lab.gateway.ledger.rules import Rules, check_acl_subject, check_quota_subject
from consortium_lab.gateway.ledger.sqlite import SQLiteLedger
from consortium_lab.gateway.ledger.usage import GROUP_BY, UsageFilter, UsageRecord, aggregate

__all__ = [
    "GROUP_BY",
    "AuditBroken",
    "AuditEntry",
    "Ledger",
    "RecordDone",
    "RedisLedger",
    "RedisUnreachable",
    "Rules",
    "SQLiteLedger",
    "UsageFilter",
    "UsageRecord",
    "aggregate",
    "check_acl_subject",
    "check_quota_subject",
    "mask_url",
    "open_ledger",
    "verify",
]


def open_ledger(spec: str | Path) -> Ledger:
    """A ledger from a file path (SQLite) or a ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    text = str(spec)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisLedger(text)
    return SQLiteLedger(text)
