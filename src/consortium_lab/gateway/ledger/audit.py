"""The audit log: append-only, hash-chained entries of who did what, when.

Each entry holds the SHA-256 of the entry before it (``prev``) and its own (``hash``, over its
sequence number, time, actor, action, target, detail and ``prev``), so changing, removing or
reordering any entry breaks the chain from there on: :func:`verify` names the first entry that
does not fit. The ledger backends store entries (a SQLite table whose triggers refuse updates
and deletes; a Redis stream); nothing in the service edits or deletes one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["GENESIS", "AuditBroken", "AuditEntry", "chain_entry", "verify"]

GENESIS = "0" * 64
"""The ``prev`` of the first entry."""


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry."""

    seq: int
    """Position in the log, from 1, without gaps."""
    time: float
    """When (seconds since the epoch)."""
    actor: str
    """Who: a user name, ``admin``, ``gateway`` (the service itself), or a pseudonym."""
    action: str
    """What, as a short dotted name (``quota.set``, ``token.first_use``, ``login``...)."""
    target: str | None = None
    """What it was done to (a subject, a user), when anything."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (JSON), never a secret, prompt or answer."""
    prev: str = GENESIS
    hash: str = ""

    def content_hash(self) -> str:
        """The SHA-256 of everything but ``hash`` itself (canonical JSON)."""
        material = {k: v for k, v in asdict(self).items() if k != "hash"}
        text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data, with ``time`` also as ISO 8601 (``at``)."""
        data = asdict(self)
        data["detail"] = dict(self.detail)
        data["at"] = datetime.fromtimestamp(self.time, UTC).isoformat()
        return data

    def to_json(self) -> str:
        """The stored form (what a backend keeps)."""
        data = asdict(self)
        data["detail"] = dict(self.detail)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> AuditEntry:
        """An entry from its stored form."""
        return cls(**json.loads(text))


def chain_entry(
    last: AuditEntry | None,
    *,
    time: float,
    actor: str,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry that follows ``last`` (``None``: the first), its hash filled in.

    Raises:
        ValueError: an empty actor or action, or a detail that is not JSON.
    """
    if not actor or not action:
        raise ValueError("an audit entry needs an actor and an action")
    detail = dict(detail or {})
    try:
        json.dumps(detail)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit detail must be JSON: {exc}") from None
    entry = AuditEntry(
        seq=(last.seq + 1) if last else 1,
        time=float(time),
        actor=str(actor),
        action=str(action),
        target=None if target is None else str(target),
        detail=detail,
        prev=last.hash if last else GENESIS,
    )
    return AuditEntry(**{**asdict(entry), "detail": detail, "hash": entry.content_hash()})


class AuditBroken(ValueError):
    """The chain does not hold at ``seq`` (the first entry that does not fit)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"the audit log is broken at entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def verify(entries: Iterable[AuditEntry]) -> int:
    """Check the chain; the number of entries when it holds.

    Raises:
        AuditBroken: naming the first entry that was changed, removed, inserted or moved.
    """
    previous: AuditEntry | None = None
    count = 0
    for entry in entries:
        expected_seq = previous.seq + 1 if previous else 1
        if entry.seq != expected_seq:
            raise AuditBroken(
                expected_seq, f"found entry {entry.seq} in its place (removed or reordered)"
            )
        if entry.prev != (previous.hash if previous else GENESIS):
            raise AuditBroken(entry.seq, "its link to the previous entry does not match")
        if entry.content_hash() != entry.hash:
            raise AuditBroken(entry.seq, "its contents do not match its hash (changed)")
        previous = entry
        count += 1
    return count
