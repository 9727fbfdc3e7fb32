"""The time every event carries (``at``): ``datetime.now(UTC).isoformat()``'s text, made
without an aware datetime per event."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from consortium_lab.engine.events import MemberDelta, iso_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def expected(ns: int) -> str:
    return (EPOCH + timedelta(microseconds=ns // 1000)).isoformat()


def test_iso_utc_is_isoformat_of_the_same_instant() -> None:
    rng = random.Random(10)
    second = 1_796_000_000 * 10**9
    instants = [
        0,
        999,  # under a microsecond: none shown, as isoformat() does
        1000,
        second,
        second + 999,
        second + 1_000,
        second + 999_999_999,
        second + 10**9,  # the next second: a new prefix
        second - 1,  # back to the previous second
        *(rng.randrange(0, 4 * 10**18) for _ in range(5000)),
    ]
    for ns in instants:
        assert iso_utc(ns) == expected(ns), ns


def test_an_event_is_stamped_now_in_isoformat() -> None:
    before = datetime.now(UTC)
    event = MemberDelta(run_id="r", model="m", instance=1, iteration=1, text="x")
    after = datetime.now(UTC)
    at = datetime.fromisoformat(event.at)
    assert before - timedelta(microseconds=1) <= at <= after
    assert event.at == at.isoformat()
    assert iso_utc(time.time_ns()).endswith("+00:00")
