"""Usage records of the gateway service, the filters that select them, and their aggregates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["GROUP_BY", "UsageFilter", "UsageRecord", "aggregate", "check_group_by"]

GROUP_BY = ("user", "model", "served_by", "outcome", "day")
"""The fields :meth:`Ledger.usage` can group by (``day`` is the UTC date of the call)."""


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


@dataclass(frozen=True)
class UsageFilter:
    """Which usage records a read selects: a time range (``until`` exclusive), a user, a model.

    ``None`` leaves a bound out. Backends that query (SQLite) use :meth:`where`; backends that
    scan (Redis) use :meth:`matches`.
    """

    since: float | None = None
    until: float | None = None
    user: str | None = None
    model: str | None = None

    def matches(self, record: UsageRecord) -> bool:
        """Whether ``record`` is selected."""
        return (
            (self.since is None or record.time >= self.since)
            and (self.until is None or record.time < self.until)
            and (self.user is None or record.user == self.user)
            and (self.model is None or record.model == self.model)
        )

    def where(self) -> tuple[str, list[Any]]:
        """The SQL ``WHERE`` clause (empty when nothing is bounded) and its parameters."""
        where, params = [], []
        for clause, value in (
            ("time >= ?", self.since),
            ("time < ?", self.until),
            ("user = ?", self.user),
            ("model = ?", self.model),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        return (" WHERE " + " AND ".join(where)) if where else "", params


def check_group_by(group_by: Sequence[str]) -> list[str]:
    """The ``group_by`` fields without repeats; raises ``ValueError`` naming an unknown one."""
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
    fields = check_group_by(group_by)
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
