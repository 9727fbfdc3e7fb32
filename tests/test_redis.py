"""Everything kept in Redis, against a real ``redis-server`` (the ``redis_server`` fixture):
the response cache, the gateway's cache across two gateways, quota counters across two
managers, the ledger's Redis backend, and two gateway service replicas sharing one Redis."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis

import test_service as svc
from consortium_lab import Gateway
from consortium_lab.gateway.cache import CachedAnswer, RedisResponseCache
from consortium_lab.gateway.calls import CallRequest
from consortium_lab.gateway.ledger import RedisLedger, SQLiteLedger, UsageRecord, open_ledger
from consortium_lab.gateway.quotas import QuotaExceeded, QuotaManager, QuotaPolicy

from fake_openai import ModelScript


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def test_redis_response_cache_get_set_ttl_delete_clear(redis_server):
    cache = RedisResponseCache(redis_server.url)
    other = RedisResponseCache(redis_server.url, prefix="other:")
    entry = CachedAnswer(text="An answer.", served_by="m", input_tokens=3, output_tokens=2)
    assert cache.get("k") is None
    cache.set("k", entry, None)
    assert cache.get("k") == entry
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.pttl("consortium_lab:cache:k") == -1  # no TTL: kept until evicted
    cache.set("short", entry, 0.3)
    assert 0 < raw.pttl("consortium_lab:cache:short") <= 300
    wait_until(lambda: cache.get("short") is None)
    cache.set("gone", entry, 60)
    cache.delete("gone")
    assert cache.get("gone") is None
    other.set("k", entry, None)
    cache.clear()
    assert cache.get("k") is None
    assert other.get("k") == entry  # clear() leaves other prefixes alone
    for c in (cache, other):
        c.close()
    raw.close()


async def test_gateway_cache_in_redis_is_shared_by_two_gateways(fake_openai, redis_server):
    fake_openai.add_model("m", ModelScript(reply="Shared answer."))
    one = Gateway(cache=redis_server.url, backoff=0.01, log_to_llm=False)
    two = Gateway(cache=redis_server.url, backoff=0.01, log_to_llm=False)
    request = CallRequest(model="m", prompt="Q", user="alice")
    first = await one.call(request)
    assert not first.cached and first.text == "Shared answer."
    second = await two.call(request)
    assert second.cached and second.text == "Shared answer."
    assert not (await two.call(replace(request, user="bob"))).cached  # per user
    assert len(fake_openai.requests_for("m")) == 2
    assert b'consortium_gateway_cache_hits_total{model="m"} 1.0' in two.metrics.render()
    one.close()
    two.close()


def test_quota_counts_in_redis_are_shared_by_two_managers(redis_server):
    now = time.time()  # one fixed clock: the windows cannot roll over mid-test
    policy = QuotaPolicy(requests_per_minute=3, tokens_per_day=100)
    a = QuotaManager(policy, storage=redis_server.url, clock=lambda: now)
    b = QuotaManager(policy, storage=redis_server.url, clock=lambda: now)
    a.check("alice")
    b.check("alice")
    a.check("alice")
    with pytest.raises(QuotaExceeded) as info:
        b.check("alice")
    assert info.value.window == "requests_per_minute" and info.value.retry_after > 0
    b.check("bob")  # other users are counted apart
    a.charge("alice", 60, 30)
    assert b.usage("alice")["tokens_per_day"]["used"] == 90
    assert b.usage("alice")["requests_per_minute"]["used"] == 3  # the refused call is not counted
    with pytest.raises(QuotaExceeded) as info:
        b.check("alice", requested_output_tokens=50)
    b.reset("alice")
    assert a.usage("alice")["requests_per_minute"]["used"] == 0


def _records(t0: float) -> list[UsageRecord]:
    return [
        UsageRecord(t0, "alice", "m", "ok", "m", 10, 5, 0.5, False, 100.0),
        UsageRecord(t0 + 1, "alice", "m", "ok", "m", 10, 5, None, True, 0.0),
        UsageRecord(t0 + 2, "alice", "m", "quota"),
        UsageRecord(t0 + 86_400, "bob", "n", "ok", "n2", 1, 2, 0.25, False, 300.0),
    ]


def test_redis_ledger_matches_the_sqlite_ledger_and_is_shared(redis_server, tmp_path):
    t0 = datetime(2025, 1, 1, 12, tzinfo=UTC).timestamp()
    ledger = open_ledger(redis_server.url)
    assert isinstance(ledger, RedisLedger) and ledger.check()
    assert ledger.quota_storage == redis_server.url
    sqlite = SQLiteLedger(tmp_path / "ledger.db")
    for record in _records(t0):
        ledger.record(record)
        sqlite.record(record)
    for group_by in (["user", "model"], ["day"], ["user", "outcome"], ["served_by"], []):
        assert ledger.usage(group_by=group_by) == sqlite.usage(group_by=group_by), group_by
    for filters in ({"user": "alice"}, {"since": t0 + 1}, {"until": t0 + 2}, {"model": "n"}):
        assert ledger.usage(**filters) == sqlite.usage(**filters), filters
        assert ledger.records(**filters) == sqlite.records(**filters), filters
    assert ledger.records(limit=2) == sqlite.records(limit=2)
    assert ledger.usage(user="nobody") == []

    replica = RedisLedger(redis_server.url)  # another gateway replica
    assert replica.revision() == 0
    ledger.set_quota("group:staff", QuotaPolicy(tokens_per_day=500))
    ledger.set_acl("user:bob", ["n*"])
    assert replica.revision() == 2
    assert replica.quota_policies() == {"group:staff": QuotaPolicy(tokens_per_day=500)}
    rules = replica.rules({"default": QuotaPolicy(requests_per_day=1)}, {"*": ["*"]})
    assert rules.quota_for("carol", ["staff"]).tokens_per_day == 500
    assert rules.allows("bob", [], "n1") and not rules.allows("bob", [], "m")
    replica.set_acl("user:bob", None)
    assert ledger.acl_rules() == {} and ledger.revision() == 3
    with pytest.raises(ValueError, match="subject"):
        ledger.set_acl("bob", ["*"])
    for made in (ledger, replica, sqlite):
        made.close()


def test_two_service_replicas_share_quotas_cache_and_rules(gateways, fake_openai, redis_server):
    svc.wait_for_day_window()
    gateways.provider("m", ModelScript(reply="Replicated."))
    a = gateways.start("a", redis=redis_server.url)
    b = gateways.start("b", redis=redis_server.url)
    quota = {"requests_per_day": 3}
    assert a.request("PUT", "/admin/quotas/users/alice", svc.ADMIN, quota).status == 200
    assert a.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is False
    assert b.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is True
    assert b.chat(svc.BOB, "m", "Q").json()["consortium"]["cached"] is False  # per user
    assert a.chat(svc.ALICE, "m", "Q2").status == 200  # alice's third request
    refused = b.chat(svc.ALICE, "m", "Q3")  # counted across replicas, policy set on a
    assert refused.status == 429 and "3 requests per day" in refused.error["message"]
    assert len(fake_openai.requests_for("m")) == 3
    assert b.request("PUT", "/admin/acl/users/bob", svc.ADMIN, {"models": []}).status == 200
    assert a.chat(svc.BOB, "m", "Q").status == 403  # the rule set through b applies on a
    rows = a.request("GET", "/admin/usage?group_by=user,outcome", svc.ADMIN).json()["rows"]
    assert {(r["user"], r["outcome"]): r["calls"] for r in rows} == {
        ("alice", "ok"): 3,
        ("alice", "quota"): 1,
        ("bob", "ok"): 1,
    }
