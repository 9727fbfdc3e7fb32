"""Gateway operations: metrics tokens, the hash-chained audit log (and ``consortium-lab audit
verify`` on a tampered one), usage retention, and ``DELETE /v1/me/data``. The ledgers are
real (SQLite files, a real ``redis-server``); the services are real subprocesses."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import test_service as svc
from consortium_lab.gateway.ledger import (
    AuditBroken,
    RedisLedger,
    SQLiteLedger,
    UsageRecord,
    verify,
)
from consortium_lab.gateway.userhash import is_user_hash, user_hash
from consortium_lab.service.settings import ServiceSettings, SettingsError

from fake_openai import ModelScript
from helpers import cli

METRICS = "tok-metrics-0123456789abcdef"
SECRET = "hash-secret-for-tests"
DAY = 86_400.0


def audit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli(None, "audit", "verify", *args, check=False)


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -3, 1.5, "seven", True])
def test_bad_retention_days_are_refused_naming_the_setting(bad):
    with pytest.raises(SettingsError) as info:
        ServiceSettings.from_dict({"usage_retention_days": bad})
    assert str(info.value).startswith("usage_retention_days:")
    assert ServiceSettings.from_dict({"usage_retention_days": 30}).usage_retention_days == 30


def test_bad_retention_days_stop_the_gateway_with_one_line(gateways):
    config = gateways.settings("bad", usage_retention_days=0)
    done = cli(None, "gateway", "--config", str(config), check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: invalid gateway settings: usage_retention_days: must be a whole number of "
        "days, 1 or more, or None to keep records for ever (got 0)"
    ]


def test_user_hash_is_keyed_stable_and_recognisable():
    one = user_hash("alice", SECRET)
    assert one == user_hash("alice", SECRET) and is_user_hash(one)
    assert one != user_hash("alice", "another secret") and one != user_hash("bob", SECRET)
    assert not is_user_hash("alice")
    with pytest.raises(ValueError, match="secret"):
        user_hash("alice", "")


# -- the ledger: audit chain, purge, rename, on both backends ------------------------------
def _ledgers(tmp_path: Path, redis_server) -> list:
    return [SQLiteLedger(tmp_path / "ledger.db"), RedisLedger(redis_server.url)]


def test_ledgers_chain_audit_purge_and_rename(tmp_path, redis_server):
    now = time.time()
    for ledger in _ledgers(tmp_path, redis_server):
        first = ledger.audit("admin", "quota.set", "user:bob", {"tokens_per_day": 5})
        second = ledger.audit("alice", "login")
        assert (first.seq, second.seq, second.prev) == (1, 2, first.hash)
        assert ledger.audit_once("token:x", "alice", "token.first_use") is not None
        assert ledger.audit_once("token:x", "alice", "token.first_use") is None
        assert verify(ledger.audit_entries()) == 3
        assert [e.seq for e in ledger.audit_entries(after=1, limit=1)] == [2]

        ledger.record_many(
            [
                UsageRecord(now - 10 * DAY, "alice", "m", "ok", "m", 10, 5, 0.5),
                UsageRecord(now - 1, "alice", "m", "ok", "m", 1, 2, 0.25),
                UsageRecord(now - 1, "bob", "m", "ok", "m", 3, 4, 1.0),
            ]
        )
        assert ledger.purge_usage(now - 5 * DAY) == 1
        assert len(ledger.records()) == 2
        before = ledger.usage(group_by=[])
        assert ledger.rename_user("alice", "anon-1") == 1
        assert ledger.usage(group_by=[]) == before  # totals stay right
        rows = {r["user"]: r["calls"] for r in ledger.usage(group_by=["user"])}
        assert rows == {"anon-1": 1, "bob": 1}
        assert {r.user for r in ledger.records()} == {"anon-1", "bob"}
        ledger.close()


def test_sqlite_audit_log_refuses_edits_and_verify_names_the_tampered_entry(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(path)
    for n in range(4):
        ledger.audit("admin", "quota.set", f"user:u{n}")
    ledger.close()
    ok = audit_cli("--ledger", str(path))
    assert ok.returncode == 0 and "4 entries" in ok.stdout

    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE gateway_audit SET entry = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM gateway_audit WHERE seq = 2")
    # Someone with the file drops the guard and rewrites entry 3's target.
    conn.execute("DROP TRIGGER gateway_audit_no_update")
    text = conn.execute("SELECT entry FROM gateway_audit WHERE seq = 3").fetchone()[0]
    conn.execute(
        "UPDATE gateway_audit SET entry = ? WHERE seq = 3", [text.replace("user:u2", "user:zz")]
    )
    conn.commit()
    conn.close()
    broken = audit_cli("--ledger", str(path))
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines() == [
        f"Error: {path}: the audit log is broken at entry 3: its contents do not match its "
        "hash (changed)"
    ]
    assert audit_cli("--ledger", str(tmp_path / "none.db")).returncode == 1
    not_ledger = tmp_path / "other.db"
    sqlite3.connect(not_ledger).execute("CREATE TABLE t (x)").connection.close()
    refused = audit_cli("--ledger", str(not_ledger))
    assert refused.returncode == 1 and "not a gateway ledger" in refused.stderr


def test_redis_audit_log_with_an_entry_removed_is_broken(redis_server):
    import redis

    ledger = RedisLedger(redis_server.url)
    for n in range(3):
        ledger.audit("admin", "acl.set", f"user:u{n}")
    assert audit_cli("--redis", redis_server.url).returncode == 0
    raw = redis.Redis.from_url(redis_server.url)
    second = raw.xrange("consortium_lab:ledger:audit")[1][0]
    raw.xdel("consortium_lab:ledger:audit", second)
    with pytest.raises(AuditBroken) as info:
        verify(ledger.audit_entries())
    assert info.value.seq == 2
    out = audit_cli("--redis", redis_server.url)
    assert out.returncode == 1 and "broken at entry 2" in out.stderr
    raw.close()
    ledger.close()


# -- the service ------------------------------------------------------------------------------
def test_metrics_tokens_read_metrics_only(gateways):
    gateways.provider("m", ModelScript(reply="Hi."))
    service = gateways.start(metrics_tokens=[METRICS])
    assert service.request("GET", "/metrics", METRICS).status == 200
    for token in (None, svc.ADMIN, svc.ALICE):
        refused = service.request("GET", "/metrics", token)
        assert refused.status == 401 and refused.error["code"] == "invalid_api_key"
    assert service.request("GET", "/v1/models", METRICS).status == 401
    assert service.request("GET", "/admin/quotas", METRICS).status == 401
    assert service.chat(METRICS, "m", "Q").status == 401


def test_audit_log_records_admin_writes_first_token_use_and_hub_logins(gateways):
    gateways.provider("m", ModelScript(reply="Audited."))
    service = gateways.start()
    assert service.request("PUT", "/admin/quotas/users/bob", svc.ADMIN, {}).status == 200
    assert service.request("PUT", "/admin/acl/users/bob", svc.ADMIN, {"models": []}).status == 200
    assert service.request("DELETE", "/admin/acl/users/bob", svc.ADMIN).status == 200
    assert service.request("DELETE", "/admin/users/bob/counters", svc.ADMIN).status == 200
    for _ in range(2):
        assert service.chat(svc.ALICE, "m", "Q").status == 200
    login = {"actor": "carol", "action": "login", "detail": {"authenticator": "generic"}}
    posted = service.request("POST", "/admin/audit", svc.ADMIN, login)
    assert posted.status == 201 and posted.json()["seq"] == 6
    assert service.request("POST", "/admin/audit", svc.ALICE, login).status == 403
    missing = service.request("POST", "/admin/audit", svc.ADMIN, {"action": "login"})
    assert missing.status == 400 and missing.error["param"] == "actor"
    bad = service.request("POST", "/admin/audit", svc.ADMIN, {"actor": "x", "action": "Bad!"})
    assert bad.status == 400 and bad.error["param"] == "action"
    for method in ("PUT", "DELETE", "PATCH"):
        assert service.request(method, "/admin/audit", svc.ADMIN, {}).status == 405
    entries = service.request("GET", "/admin/audit", svc.ADMIN).json()["entries"]
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("admin", "quota.set", "user:bob"),
        ("admin", "acl.set", "user:bob"),
        ("admin", "acl.delete", "user:bob"),
        ("admin", "counters.reset", "user:bob"),
        ("alice", "token.first_use", "alice"),  # once, although alice called twice
        ("carol", "login", None),
    ]
    assert entries[4]["detail"]["token_id"].startswith("static-")
    assert svc.ALICE not in str(entries)
    logins = service.request("GET", "/admin/audit?action=login", svc.ADMIN).json()["entries"]
    assert [e["seq"] for e in logins] == [6]
    assert service.request("GET", "/admin/audit", svc.ALICE).status == 403
    service.stop()
    ledger = gateways.root / "gw" / "ledger.db"
    assert audit_cli("--ledger", str(ledger)).returncode == 0


def test_usage_retention_purges_old_records_at_start(gateways):
    gateways.provider("m", ModelScript(reply="Kept."))
    ledger_path = gateways.root / "ret" / "ledger.db"
    seeded = SQLiteLedger(ledger_path)
    now = time.time()
    seeded.record_many(
        [
            UsageRecord(now - 40 * DAY, "old-marker-user", "m", "ok", "m", 1, 1, 0.1),
            UsageRecord(now - 2 * DAY, "alice", "m", "ok", "m", 1, 1, 0.1),
        ]
    )
    seeded.close()
    service = gateways.start("ret", usage_retention_days=30)
    deadline = time.monotonic() + 20
    while True:
        entries = service.request("GET", "/admin/audit?action=usage.purge", svc.ADMIN).json()
        if entries["entries"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [e["detail"]["deleted"] for e in entries["entries"]] == [1]
    users = [
        r["user"]
        for r in service.request("GET", "/admin/usage/records", svc.ADMIN).json()["records"]
    ]
    assert users == ["alice"]
    service.stop()
    for file in ledger_path.parent.glob("ledger.db*"):  # vacuumed: gone from the bytes too
        assert b"old-marker-user" not in file.read_bytes(), file


def test_delete_my_data_removes_cache_and_pseudonymises_usage(gateways, fake_openai):
    # The cache keeps answers under digests of the question: the answers carry the markers.
    gateways.provider("m", ModelScript(reply="alice-answer-marker"))
    gateways.provider("n", ModelScript(reply="bob-answer-marker"))
    service = gateways.start("mine", user_hash_secret=SECRET)
    for token, model, prompt in (
        (svc.ALICE, "m", "Q1"),
        (svc.ALICE, "m", "Q2"),
        (svc.BOB, "n", "Q"),
    ):
        assert service.chat(token, model, prompt).status == 200
    assert service.chat(svc.ALICE, "m", "Q1").json()["consortium"]["cached"] is True

    missing = service.request("DELETE", "/v1/me/data", svc.ALICE, {})
    assert missing.status == 400 and missing.error["param"] == "confirm"
    wrong = service.request("DELETE", "/v1/me/data", svc.ALICE, {"confirm": "bob"})
    assert wrong.status == 400 and wrong.error["code"] == "invalid_value"
    assert service.chat(svc.ALICE, "m", "Q1").json()["consortium"]["cached"] is True  # kept

    totals = service.request("GET", "/admin/usage?group_by=", svc.ADMIN).json()["rows"]
    done = service.request("DELETE", "/v1/me/data", svc.ALICE, {"confirm": "alice"})
    assert done.status == 200, done.body
    alias = user_hash("alice", SECRET)
    assert done.json() == {
        "deleted": {"cache_entries": 2},
        "pseudonymised": {"usage_records": 4, "as": alias},
    }
    assert service.request("GET", "/admin/usage?group_by=", svc.ADMIN).json()["rows"] == totals
    rows = service.request("GET", "/admin/usage?group_by=user", svc.ADMIN).json()["rows"]
    assert {r["user"]: r["calls"] for r in rows} == {alias: 4, "bob": 1}
    audit = service.request("GET", "/admin/audit?action=user.data_deleted", svc.ADMIN).json()
    assert [e["actor"] for e in audit["entries"]] == [alias]
    service.stop()
    files = [f for f in (gateways.root / "mine").rglob("*") if f.is_file()]
    for file in files:  # the cache, vacuumed; its WAL, truncated
        assert b"alice-answer-marker" not in file.read_bytes(), file
    # The audit log keeps her name (security records are append-only), and the quota counters
    # until their windows end: docs/security.md says so.
    assert any(b"bob-answer-marker" in f.read_bytes() for f in files)  # bob's is untouched

    service = gateways.start("mine")
    calls = len(fake_openai.requests_for("n"))
    assert service.chat(svc.BOB, "n", "Q").json()["consortium"]["cached"] is True
    assert service.chat(svc.ALICE, "m", "Q1").json()["consortium"]["cached"] is False
    assert len(fake_openai.requests_for("n")) == calls
