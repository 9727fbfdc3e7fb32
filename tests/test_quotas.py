"""Per-user quotas: policies, each limit, the pre-call cap check, storages (SQLite across
restarts and processes). Windows run on an injected clock, so nothing here sleeps."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from consortium_lab.gateway.quotas import (
    QuotaExceeded,
    QuotaManager,
    QuotaPolicy,
    sqlite_path,
    sqlite_storage_class,
)

limits = pytest.importorskip("limits")

# 2026-11-25 20:48:00 UTC: 3 h 12 min before the day window ends, 0 s into a minute window.
T0 = datetime(2026, 11, 25, 20, 48, tzinfo=UTC).timestamp()


class Clock:
    """A settable clock for :class:`QuotaManager`."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def manager(clock: Clock, storage: str = "memory://", **policy: int) -> QuotaManager:
    return QuotaManager(QuotaPolicy(**policy), storage=storage, clock=clock)


# -- policies ----------------------------------------------------------------------------------
def test_policy_defaults_to_unlimited() -> None:
    policy = QuotaPolicy()
    assert policy.unlimited
    assert policy.requests_per_minute is None
    assert not QuotaPolicy(tokens_per_day=5).unlimited


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "many", "", [1]])
@pytest.mark.parametrize("field", ["requests_per_minute", "tokens_per_day"])
def test_policy_rejects_non_positive_integers_naming_the_field(field: str, bad: object) -> None:
    with pytest.raises(ValidationError, match=f"{field} must be a positive integer"):
        QuotaPolicy(**{field: bad})


def test_policy_accepts_integer_like_values_and_forbids_unknown_fields() -> None:
    assert QuotaPolicy(tokens_per_day="1000").tokens_per_day == 1000
    assert QuotaPolicy(tokens_per_day=1e6).tokens_per_day == 1_000_000
    with pytest.raises(ValidationError, match="tokens_per_month"):
        QuotaPolicy(tokens_per_month=5)  # type: ignore[call-arg]


def test_policy_is_immutable() -> None:
    policy = QuotaPolicy(requests_per_day=3)
    with pytest.raises(ValidationError):
        policy.requests_per_day = 4  # type: ignore[misc]
    assert policy.model_copy(update={"requests_per_day": 4}).requests_per_day == 4


# -- request limits -----------------------------------------------------------------------------
def test_requests_per_minute(clock: Clock) -> None:
    quotas = manager(clock, requests_per_minute=2)
    quotas.check("alice")
    quotas.check("alice")
    with pytest.raises(QuotaExceeded) as info:
        quotas.check("alice")
    exc = info.value
    assert (exc.user, exc.limit, exc.window, exc.allowed) == (
        "alice",
        "requests per minute",
        "requests_per_minute",
        2,
    )
    assert exc.resets_at == datetime(2026, 11, 25, 20, 49, tzinfo=UTC)
    assert exc.retry_after == pytest.approx(60)
    # A refused request is not counted.
    assert quotas.usage("alice")["requests_per_minute"]["used"] == 2
    clock.advance(59.9)
    with pytest.raises(QuotaExceeded):
        quotas.check("alice")
    clock.advance(0.1)  # the next clock minute
    quotas.check("alice")
    assert quotas.usage("alice")["requests_per_minute"]["used"] == 1
    assert quotas.usage("alice")["requests_per_day"]["used"] == 3


def test_requests_per_day_refusal_does_not_count_the_minute(clock: Clock) -> None:
    quotas = manager(clock, requests_per_minute=10, requests_per_day=3)
    for _ in range(3):
        quotas.check("bob")
        clock.advance(61)
    with pytest.raises(QuotaExceeded, match="3 requests per day") as info:
        quotas.check("bob")
    assert info.value.resets_at == datetime(2026, 11, 26, tzinfo=UTC)
    usage = quotas.usage("bob")
    assert usage["requests_per_minute"]["used"] == 0
    assert usage["requests_per_day"]["used"] == 3
    clock.now = datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC).timestamp()
    quotas.check("bob")


# -- token limits -------------------------------------------------------------------------------
def test_output_cap_is_checked_against_the_tokens_left_before_the_call(clock: Clock) -> None:
    quotas = manager(clock, tokens_per_minute=100)
    assert quotas.check("carol", 50) == 50
    quotas.charge("carol", 30, 40)
    with pytest.raises(QuotaExceeded) as info:
        quotas.check("carol", 50)
    exc = info.value
    assert (exc.limit, exc.allowed, exc.used, exc.requested) == ("tokens per minute", 100, 70, 50)
    assert "30 left, fewer than this call's output cap of 50" in str(exc)
    assert "lower the cap to at most 30" in str(exc)
    assert quotas.check("carol", 30) == 30  # fits exactly
    assert quotas.check("carol") is None  # no cap: only an exhausted window refuses
    assert quotas.usage("carol")["requests_per_minute"]["used"] == 3  # the refusal not counted


def test_charge_then_exceed(clock: Clock) -> None:
    quotas = manager(clock, tokens_per_day=1000)
    quotas.check("dave")
    quotas.charge("dave", 600, 500)  # actual usage may pass the limit: it is recorded
    usage = quotas.usage("dave")["tokens_per_day"]
    assert (usage["used"], usage["limit"], usage["remaining"]) == (1100, 1000, 0)
    with pytest.raises(QuotaExceeded, match="1000 tokens per day"):
        quotas.check("dave")
    clock.now = datetime(2026, 11, 26, 0, 0, tzinfo=UTC).timestamp()
    assert quotas.check("dave", 1000) == 1000


def test_tokens_per_minute_and_day_are_separate_windows(clock: Clock) -> None:
    quotas = manager(clock, tokens_per_minute=100, tokens_per_day=150)
    quotas.charge("erin", 50, 50)
    with pytest.raises(QuotaExceeded, match="tokens per minute"):
        quotas.check("erin")
    clock.advance(60)
    with pytest.raises(QuotaExceeded, match="tokens per day"):
        quotas.check("erin", 60)
    assert quotas.check("erin", 50) == 50


def test_max_output_tokens_per_call_lowers_the_cap(clock: Clock) -> None:
    quotas = manager(clock, max_output_tokens_per_call=100, tokens_per_day=150)
    assert quotas.check("fay", 8192) == 100
    assert quotas.check("fay", 20) == 20
    assert quotas.check("fay") == 100
    assert manager(clock).check("fay", 8192) == 8192
    assert manager(clock).check("fay") is None
    quotas.charge("fay", 0, 100)
    with pytest.raises(QuotaExceeded, match="50 left"):
        quotas.check("fay")  # the policy's cap is what must fit


def test_charge_validates_and_ignores_unreported_tokens(clock: Clock) -> None:
    quotas = manager(clock)
    quotas.charge("gus", None, None)
    quotas.charge("gus", 5, None)
    assert quotas.usage("gus")["tokens_per_day"]["used"] == 5
    with pytest.raises(ValueError, match="negative"):
        quotas.charge("gus", -1, 0)
    with pytest.raises(TypeError):
        quotas.charge("gus", 1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        quotas.check("gus", 0)


# -- the error ----------------------------------------------------------------------------------
def test_error_message_names_the_limit_and_the_reset_time(clock: Clock) -> None:
    quotas = manager(clock, tokens_per_day=10000)
    quotas.charge("alice", 4000, 6000)
    with pytest.raises(QuotaExceeded) as info:
        quotas.check("alice", 100)
    assert str(info.value).startswith(
        "quota exceeded for user 'alice': 10000 tokens per day; "
        "resets at 2026-11-26 00:00:00 UTC (in 3h 12m)"
    )
    assert info.value.resets_at.tzinfo is not None
    assert info.value.retry_after == pytest.approx(3 * 3600 + 12 * 60)


def test_error_survives_pickling() -> None:
    exc = QuotaExceeded("u", "requests per day", 5, datetime(2030, 1, 1, tzinfo=UTC), 12.0, used=5)
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == str(exc)
    assert (again.window, again.used, again.retry_after) == ("requests_per_day", 5, 12.0)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "in 1s"), (59, "in 59s"), (125, "in 2m 5s"), (90000, "in 1d 1h")]
)
def test_durations_in_messages(seconds: float, text: str) -> None:
    exc = QuotaExceeded("u", "requests per minute", 1, datetime(2030, 1, 1, tzinfo=UTC), seconds)
    assert f"({text})" in str(exc)


# -- users and policies at run time ---------------------------------------------------------------
def test_users_are_isolated(clock: Clock) -> None:
    quotas = manager(clock, requests_per_minute=1, tokens_per_day=10)
    quotas.check("alice")
    quotas.charge("alice", 10, 0)
    with pytest.raises(QuotaExceeded):
        quotas.check("alice")
    quotas.check("bob", 10)
    assert quotas.usage("bob")["tokens_per_day"]["used"] == 0


def test_per_user_policies_and_set_policy_while_running(clock: Clock) -> None:
    quotas = QuotaManager(
        QuotaPolicy(requests_per_day=1),
        {"vip": QuotaPolicy(requests_per_day=3)},
        clock=clock,
    )
    assert quotas.policy_for("vip").requests_per_day == 3
    assert quotas.policy_for("anyone").requests_per_day == 1
    quotas.check("ann")
    with pytest.raises(QuotaExceeded):
        quotas.check("ann")
    quotas.set_policy("ann", QuotaPolicy(requests_per_day=2))  # raised: usage carries over
    quotas.check("ann")
    with pytest.raises(QuotaExceeded, match="2 requests per day"):
        quotas.check("ann")
    quotas.set_policy("ann", None)  # back to the default
    assert quotas.policy_for("ann").requests_per_day == 1
    quotas.set_default(None)  # everyone unlimited now
    for _ in range(5):
        quotas.check("ann")
    assert quotas.usage("ann")["requests_per_day"] == {
        "used": 7,
        "limit": None,
        "remaining": None,
        "resets_at": datetime(2026, 11, 26, tzinfo=UTC),
    }


def test_reset_forgets_the_current_windows(clock: Clock) -> None:
    quotas = manager(clock, requests_per_day=1)
    quotas.check("zed")
    quotas.reset("zed")
    quotas.check("zed")


def test_threads_never_admit_more_than_the_limit(clock: Clock) -> None:
    quotas = manager(clock, requests_per_day=100)
    admitted: list[int] = []

    def worker() -> None:
        for _ in range(40):
            try:
                quotas.check("many")
            except QuotaExceeded:
                continue
            admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 100
    assert quotas.usage("many")["requests_per_day"]["used"] == 100


# -- deferred counting (the gateway's fast path) -------------------------------------------------
STORAGES = ["memory", "sqlite"]


def storage_uri(kind: str, tmp_path: Path) -> str:
    return "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'q.db'}"


@pytest.mark.parametrize("kind", STORAGES)
def test_try_check_admits_users_without_window_limits_at_once(
    kind: str, tmp_path: Path, clock: Clock
) -> None:
    quotas = manager(clock, storage_uri(kind, tmp_path), max_output_tokens_per_call=100)
    assert quotas.try_check("ann", 500) == (True, 100)  # the same cap check() gives
    assert quotas.try_check("ann") == (True, 100)
    # counted: every read of the manager writes the queued counts first
    assert quotas.usage("ann")["requests_per_minute"]["used"] == 2
    assert quotas.usage("ann")["requests_per_day"]["used"] == 2
    with pytest.raises(ValueError, match="at least 1"):
        quotas.try_check("ann", 0)
    # a policy with any window limit needs the storage: nothing done, check() it is
    quotas.set_policy("bob", QuotaPolicy(tokens_per_day=10))
    assert quotas.try_check("bob", 5) == (False, None)
    assert quotas.usage("bob")["requests_per_day"]["used"] == 0
    quotas.close()


@pytest.mark.parametrize("kind", STORAGES)
def test_charge_later_is_seen_by_the_next_check(kind: str, tmp_path: Path, clock: Clock) -> None:
    quotas = manager(clock, storage_uri(kind, tmp_path), tokens_per_minute=100)
    assert quotas.check("carol", 50) == 50
    quotas.charge_later("carol", 30, 40)
    quotas.charge_later("carol", None, None)  # unreported: nothing queued
    with pytest.raises(QuotaExceeded) as info:
        quotas.check("carol", 50)
    assert (info.value.used, info.value.requested) == (70, 50)
    with pytest.raises(ValueError, match="negative"):
        quotas.charge_later("carol", -1, 0)
    with pytest.raises(TypeError):
        quotas.charge_later("carol", 1.5, 0)  # type: ignore[arg-type]
    quotas.close()


def test_deferred_counts_are_written_in_the_background_and_on_close(
    tmp_path: Path, clock: Clock
) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    writer = manager(clock, uri)
    reader = manager(clock, uri)  # another process, say: sees the file only
    writer.try_check("dan")
    writer.charge_later("dan", 10, 20)
    deadline = time.monotonic() + 10
    while reader.usage("dan")["tokens_per_day"]["used"] != 30:
        assert time.monotonic() < deadline, "the writer thread did not write the counts"
        time.sleep(0.01)
    assert reader.usage("dan")["requests_per_day"]["used"] == 1
    writer.charge_later("dan", 5, 0)
    writer.close()  # writes what is still queued
    assert reader.usage("dan")["tokens_per_day"]["used"] == 35
    writer.charge_later("dan", 1, 0)  # after close: written at once
    assert reader.usage("dan")["tokens_per_day"]["used"] == 36
    writer.close()
    reader.close()


def test_a_failed_write_keeps_the_deferred_counts(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    quotas = manager(clock, f"sqlite:///{tmp_path / 'q.db'}", requests_per_day=5)
    quotas.charge_later("eve", 7, 0)
    storage = quotas.storage
    real = storage._incr  # type: ignore[attr-defined]
    failures = [sqlite3.OperationalError("database is locked")]

    def flaky(*args: object, **kwargs: object) -> int:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(storage, "_incr", flaky)
    with pytest.raises(sqlite3.OperationalError):
        quotas.check("eve")  # the transaction is rolled back: the check counted nothing
    quotas.check("eve")  # the queued tokens are written with this one
    usage = quotas.usage("eve")
    assert usage["tokens_per_day"]["used"] == 7
    assert usage["requests_per_day"]["used"] == 1
    quotas.close()


def test_a_sqlite_check_is_one_transaction(tmp_path: Path, clock: Clock) -> None:
    quotas = manager(clock, f"sqlite:///{tmp_path / 'q.db'}", requests_per_day=2)
    conn = quotas.storage._connection()  # type: ignore[attr-defined]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    quotas.check("fred")
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    quotas.check("fred")
    statements.clear()
    with pytest.raises(QuotaExceeded):
        quotas.check("fred")  # refused: counted, then taken back, in the same transaction
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    conn.set_trace_callback(None)
    assert quotas.usage("fred")["requests_per_day"]["used"] == 2
    quotas.close()


# -- storages -----------------------------------------------------------------------------------
def test_sqlite_usage_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    uri = f"sqlite:///{tmp_path / 'sub' / 'quotas.db'}"
    first = manager(clock, uri, requests_per_day=3, tokens_per_day=1000)
    first.check("alice", 100)
    first.check("alice", 100)
    first.charge("alice", 300, 400)
    first.close()
    second = manager(clock, uri, requests_per_day=3, tokens_per_day=1000)
    usage = second.usage("alice")
    assert usage["requests_per_day"]["used"] == 2
    assert usage["tokens_per_day"]["used"] == 700
    assert second.check("alice", 300) == 300
    with pytest.raises(QuotaExceeded, match="3 requests per day"):
        second.check("alice", 1)
    assert (tmp_path / "sub" / "quotas.db").exists()


def test_sqlite_storage_is_a_limits_storage(tmp_path: Path) -> None:
    from limits import RateLimitItemPerMinute
    from limits.storage import Storage, storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    storage = storage_from_string(f"sqlite:///{tmp_path / 'l.db'}")
    assert isinstance(storage, Storage)
    assert isinstance(storage, sqlite_storage_class())
    assert storage.check()
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(2)
    assert limiter.hit(item, "k")
    assert limiter.hit(item, "k", cost=1)
    assert not limiter.hit(item, "k")
    stats = limiter.get_window_stats(item, "k")
    assert stats.remaining == 0
    assert stats.reset_time > 0
    limiter.clear(item, "k")
    assert limiter.test(item, "k")
    assert storage.reset() == 0


def test_sqlite_counters_expire(tmp_path: Path) -> None:
    storage = sqlite_storage_class()(f"sqlite:///{tmp_path / 'e.db'}")
    now = [1000.0]
    storage._time = lambda: now[0]  # type: ignore[attr-defined]
    assert storage.incr("k", 10, amount=3) == 3
    assert storage.incr("k", 10, amount=2) == 5
    assert storage.get_expiry("k") == 1010.0
    assert storage.decr("k", 1) == 4  # type: ignore[attr-defined]
    now[0] = 1010.0
    assert storage.get("k") == 0
    assert storage.get_expiry("k") == 1010.0
    assert storage.incr("k", 10) == 1  # an expired counter starts again
    assert storage.get_expiry("k") == 1020.0
    storage.clear("k")
    assert storage.get("k") == 0


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:///quotas.db", "quotas.db"),
        ("sqlite:////var/lib/q.db", "/var/lib/q.db"),
        ("sqlite:///a%20b.db?timeout=5", "a b.db"),
    ],
)
def test_sqlite_uris(uri: str, path: str) -> None:
    assert sqlite_path(uri) == path


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:x.db"])
def test_bad_sqlite_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        QuotaManager(storage=uri)


def test_unknown_storage_scheme() -> None:
    with pytest.raises(limits.errors.ConfigurationError):
        QuotaManager(storage="nosuch://x")


def test_redis_uri_goes_to_limits() -> None:
    # Redis itself is tested elsewhere: here only that the URI reaches limits' RedisStorage
    # (which does not connect until used, and needs the redis package).
    from limits.storage import RedisStorage

    try:
        quotas = QuotaManager(storage="redis://localhost:6379")
    except limits.errors.ConfigurationError as exc:
        assert "redis" in str(exc).lower()
    else:
        assert isinstance(quotas.storage, RedisStorage)


_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from consortium_lab.gateway.quotas import QuotaExceeded, QuotaManager, QuotaPolicy

    uri, go, attempts = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    quotas = QuotaManager(QuotaPolicy(requests_per_day=int(sys.argv[4])), storage=uri)
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    admitted = 0
    for _ in range(attempts):
        try:
            quotas.check("shared", 10)
        except QuotaExceeded:
            continue
        quotas.charge("shared", 1, 2)
        admitted += 1
    print(admitted)
    """
)


def test_sqlite_two_processes_lose_no_counts(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    QuotaManager(storage=uri).close()  # create the file
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, uri, str(go), "150", "200"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    admitted = sum(int(out) for out, _ in results)
    assert admitted == 200  # exactly the limit, of 300 attempts
    usage = QuotaManager(QuotaPolicy(requests_per_day=200), storage=uri).usage("shared")
    assert usage["requests_per_day"]["used"] == 200
    assert usage["tokens_per_day"]["used"] == 600  # every charge of both processes


def test_import_works_without_the_gateway_extra(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["limits"] = None  # as if not installed
        sys.modules["prometheus_client"] = None
        import consortium_lab
        from consortium_lab.gateway import metrics
        from consortium_lab.gateway import pricing
        from consortium_lab.gateway import quotas
        quotas.QuotaPolicy(requests_per_day=1)
        pricing.PriceTable.load()
        try:
            quotas.QuotaManager()
        except ImportError as exc:
            print("quotas:", exc)
        try:
            metrics.Metrics()
        except ImportError as exc:
            print("metrics:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "quotas: quotas need the 'limits' package" in done.stdout
    assert "metrics: metrics need the 'prometheus-client' package" in done.stdout
