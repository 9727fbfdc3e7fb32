"""Redis in operation, against real ``redis-server`` processes: a password and TLS
(``rediss://``) work and the password never reaches a log or an error; Redis unreachable at
start stops the gateway with one line naming host:port; Redis stopped while serving gives 503
``ledger_unavailable`` (chat and ``/health``) and the service resumes by itself once it is back.
"""

from __future__ import annotations

import time

import pytest

import test_service as svc
from consortium_lab.gateway.ledger import RedisLedger, RedisUnreachable, mask_url
from redis_server import RedisServer, make_tls_files

from fake_openai import ModelScript
from helpers import cli

PASSWORD = "s3cret-redis-pass-do-not-print"


def run_gateway_expecting_failure(gateways: svc.Gateways, name: str, **settings) -> str:
    """Run ``consortium-lab gateway`` that must not start: its stderr (exit status 1)."""
    config = gateways.settings(name, **settings)
    env = gateways.fake.env()
    env.update(LLM_USER_PATH=str(gateways.llm_dir), CONSORTIUM_LAB_HOME=str(gateways.root))
    done = cli(env, "gateway", "--config", str(config), "--port", "0", check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "listening on" not in done.stdout
    return done.stderr


def test_mask_url_hides_the_password_only():
    url = f"redis://:{PASSWORD}@10.0.0.5:6380/2?ssl_ca_certs=/ca.pem"
    assert mask_url(url) == "redis://:***@10.0.0.5:6380/2?ssl_ca_certs=/ca.pem"
    assert mask_url("rediss://user:pw@h/0") == "rediss://user:***@h/0"
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_password_protected_redis_works_and_the_password_is_never_shown(
    gateways, redis_binary, tmp_path
):
    with RedisServer(redis_binary, tmp_path / "redis", password=PASSWORD) as server:
        ledger = RedisLedger(server.url)
        ledger.connect_check()
        ledger.audit("admin", "test.entry")
        assert [e.action for e in ledger.audit_entries()] == ["test.entry"]
        ledger.close()
        wrong = server.url.replace(PASSWORD, "not-the-password")
        with pytest.raises(RedisUnreachable) as info:
            RedisLedger(wrong).connect_check()
        assert "not-the-password" not in str(info.value)
        assert f"127.0.0.1:{server.port}" in str(info.value)

        gateways.provider("m", ModelScript(reply="Behind a password."))
        service = gateways.start("pw", redis=server.url)
        first = service.chat(svc.ALICE, "m", "Q")
        assert first.status == 200 and first.json()["consortium"]["cached"] is False
        assert service.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is True
        assert service.request("GET", "/health").status == 200
        refused = run_gateway_expecting_failure(gateways, "wrongpw", redis=wrong)
        assert "refused the password" in refused and "not-the-password" not in refused
        assert len(refused.strip().splitlines()) == 1, refused
        bad = run_gateway_expecting_failure(gateways, "badscheme", redis=f"http://:{PASSWORD}@h")
        assert "redis:" in bad and "***" in bad and PASSWORD not in bad
    service.stop()
    assert PASSWORD not in service.log.read_text()


def test_rediss_tls_url_works(gateways, redis_binary, tmp_path):
    tls = make_tls_files(tmp_path / "tls")
    with RedisServer(redis_binary, tmp_path / "redis", password=PASSWORD, tls=tls) as server:
        assert server.url.startswith("rediss://")
        gateways.provider("m", ModelScript(reply="Over TLS."))
        service = gateways.start("tls", redis=server.url)
        assert service.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is False
        assert service.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is True
        rows = service.request("GET", "/admin/usage?group_by=user", svc.ADMIN).json()["rows"]
        assert [(r["user"], r["calls"]) for r in rows] == [("alice", 2)]
        plain = server.url.replace("rediss://", "redis://").split("?")[0]
        with pytest.raises(RedisUnreachable):  # the TLS port does not speak plain Redis
            RedisLedger(plain).connect_check()
    service.stop()
    assert PASSWORD not in service.log.read_text()


def test_unreachable_redis_at_start_is_one_line_naming_host_and_port(gateways, redis_binary):
    from consortium_lab.apps.ports import free_port

    port = free_port()  # nothing listens there
    stderr = run_gateway_expecting_failure(
        gateways, "down", redis=f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert f"cannot reach Redis at 127.0.0.1:{port}" in lines[0]
    assert PASSWORD not in stderr and "Traceback" not in stderr


def test_redis_stopped_while_serving_gives_503_and_the_service_resumes(
    gateways, redis_binary, tmp_path
):
    server = RedisServer(redis_binary, tmp_path / "redis", password=PASSWORD).start()
    try:
        gateways.provider("m", ModelScript(reply="Before and after."))
        service = gateways.start("resume", redis=server.url)
        assert service.chat(svc.ALICE, "m", "Q").status == 200
        port = server.port
        server.stop()
        down = service.chat(svc.ALICE, "m", "Q2")
        assert down.status == 503 and down.error["code"] == "ledger_unavailable"
        streamed = service.chat(svc.ALICE, "m", "Q3", stream=True)
        assert streamed.status == 503 and streamed.error["code"] == "ledger_unavailable"
        health = service.request("GET", "/health")
        assert health.status == 503 and health.json()["ledger"] == "unreachable"
        server.start(port=port)  # back, empty (no persistence): no restart of the gateway
        deadline = time.monotonic() + 20
        while service.request("GET", "/health").status != 200:
            assert time.monotonic() < deadline, "the gateway did not see Redis come back"
            time.sleep(0.2)
        back = service.chat(svc.ALICE, "m", "Q4")
        assert back.status == 200 and back.json()["choices"][0]["message"]["content"]
    finally:
        server.stop()
    service.stop()
    log = service.log.read_text()
    assert PASSWORD not in log and "ledger unreachable" in log
