"""The ledger's shared logic (``gateway.ledger.base``) and its usage filters, on every backend.

The service tests cover the ledger through the admin API; these check what the base class does
once for every backend: validation before the backend is touched, (de)serialising policies and
rules, writing the queue before reads, and the filters both backends apply alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from consortium_lab.gateway.ledger import (
    Ledger,
    SQLiteLedger,
    UsageFilter,
    UsageRecord,
    aggregate,
)
from consortium_lab.gateway.ledger.base import EntryKind
from consortium_lab.gateway.quotas import QuotaPolicy


class MemoryLedger(Ledger):
    """A backend that only stores: everything else is the base class's."""

    quota_storage = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[UsageRecord] = []
        self.entries: dict[str, dict[str, str]] = {"quotas": {}, "acl": {}}
        self.rev = 0
        self.disconnected = False

    def record_many(self, records: Sequence[UsageRecord]) -> None:
        self.stored.extend(records)

    def _select(self, where: UsageFilter, limit: int) -> list[UsageRecord]:
        return [r for r in reversed(self.stored) if where.matches(r)][:limit]

    def _aggregate(self, where: UsageFilter, fields: list[str]) -> list[dict[str, Any]]:
        return aggregate((r for r in self.stored if where.matches(r)), fields)

    def _entries(self, kind: EntryKind) -> dict[str, str]:
        return dict(self.entries[kind])

    def _set_entry(self, kind: EntryKind, subject: str, value: str | None) -> None:
        if value is None:
            self.entries[kind].pop(subject, None)
        else:
            self.entries[kind][subject] = value
        self.rev += 1

    def revision(self) -> int:
        return self.rev

    def check(self) -> bool:
        return True

    def _disconnect(self) -> None:
        self.disconnected = True


RECORDS = [
    UsageRecord(time=100.0, user="ann", model="m1", outcome="ok", input_tokens=3, cost=0.5),
    UsageRecord(time=200.0, user="bob", model="m1", outcome="timeout"),
    UsageRecord(time=300.0, user="ann", model="m2", outcome="ok", output_tokens=4),
]


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request, tmp_path):
    made: Ledger = MemoryLedger() if request.param == "memory" else SQLiteLedger(tmp_path / "l.db")
    yield made
    made.close()


@pytest.mark.parametrize(
    "where",
    [
        UsageFilter(),
        UsageFilter(since=200.0),
        UsageFilter(until=200.0),
        UsageFilter(user="ann"),
        UsageFilter(model="m1", since=100.0, until=300.0),
    ],
)
def test_both_backends_select_the_same_records(ledger, where) -> None:
    ledger.record_many(RECORDS)
    expected = [r for r in reversed(RECORDS) if where.matches(r)]
    assert (
        ledger.records(since=where.since, until=where.until, user=where.user, model=where.model)
        == expected
    )


def test_sql_where_clause_is_built_from_the_bounds_given() -> None:
    assert UsageFilter().where() == ("", [])
    clause, params = UsageFilter(since=1.0, user="ann").where()
    assert clause == " WHERE time >= ? AND user = ?" and params == [1.0, "ann"]


def test_queued_records_are_written_before_a_read(ledger) -> None:
    told: list[BaseException | None] = []
    ledger.record_later(RECORDS[0], told.append)
    rows = ledger.usage(group_by=["user"])
    assert rows[0]["user"] == "ann" and rows[0]["calls"] == 1 and rows[0]["cost"] == 0.5
    assert told == [None]
    assert ledger.records(limit=0) == []


def test_policies_and_rules_round_trip_and_bump_the_revision(ledger) -> None:
    before = ledger.revision()
    ledger.set_quota("user:ann", QuotaPolicy(requests_per_day=5))
    ledger.set_acl("group:staff", ["gpt-4o*", "m1"])
    assert ledger.quota_policies() == {"user:ann": QuotaPolicy(requests_per_day=5)}
    assert ledger.acl_rules() == {"group:staff": ["gpt-4o*", "m1"]}
    assert ledger.revision() == before + 2
    ledger.set_quota("user:ann", None)
    ledger.set_acl("group:staff", None)
    assert ledger.quota_policies() == {} and ledger.acl_rules() == {}
    assert ledger.rules(base_acl={"*": ["*"]}).allows("bob", [], "anything")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda led: led.set_quota("everyone", QuotaPolicy()), "quota subject must be"),
        (lambda led: led.set_acl("user:ann", [" m1"]), "every entry must be a model id"),
        (lambda led: led.set_acl("team:x", ["m1"]), "ACL subject must be"),
        (lambda led: led.usage(group_by=["colour"]), "group_by: 'colour'"),
    ],
)
def test_bad_input_is_refused_before_the_backend_is_touched(ledger, call, message) -> None:
    before = ledger.revision()
    with pytest.raises(ValueError, match=message):
        call(ledger)
    assert ledger.revision() == before


def test_close_writes_the_queue_then_disconnects_and_refuses_more() -> None:
    ledger = MemoryLedger()
    ledger.record_later(RECORDS[1])
    ledger.close()
    assert ledger.stored == [RECORDS[1]] and ledger.disconnected
    with pytest.raises(RuntimeError, match="closed"):
        ledger.record_later(RECORDS[2])
