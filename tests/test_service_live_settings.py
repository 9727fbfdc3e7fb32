"""``/admin/defaults``, ``/v1/consortium/defaults`` and ``/admin/prices``: kept in the ledger,
so two services sharing one ledger (replicas) agree; bad input names the bad entry.

The services run in this process on aiohttp's test server (real sockets on 127.0.0.1), with
the offline demo models offered.
"""

from __future__ import annotations

from typing import Any

import yaml

from consortium_lab.service.app import GatewayService
from consortium_lab.service.settings import ServiceSettings

ADMIN = "tok-admin-0123456789abcdef"
ALICE = "tok-alice-0123456789abcdef"
DEFAULTS = {"members": ["demo-analyst", "demo-skeptic"], "arbiter": "demo-arbiter"}


async def _replica(tmp_path: Any, redis: str | None = None) -> tuple[GatewayService, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    tokens = tmp_path / "tokens.yaml"
    if not tokens.exists():
        tokens.write_text(yaml.safe_dump({ALICE: "alice"}))
    settings = ServiceSettings.from_dict(
        {
            "models": ["demo-*"],
            "exclude_models": [],
            "tokens_file": str(tokens),
            "admin_tokens": [ADMIN],
            "ledger": str(tmp_path / "ledger.db"),
            "redis": redis,
            "cache": "none",
        }
    )
    service = GatewayService(settings)
    client = TestClient(TestServer(service.app(), host="127.0.0.1"))
    await client.start_server()
    return service, client


async def _call(client: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    response = await client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


async def test_defaults_are_shared_by_replicas_and_checked_against_the_offer(tmp_path):
    (a, ca), (b, cb) = await _replica(tmp_path), await _replica(tmp_path)
    try:
        assert await _call(cb, "GET", "/v1/consortium/defaults", ALICE) == (200, {})
        assert await _call(ca, "PUT", "/admin/defaults", ADMIN, DEFAULTS) == (200, DEFAULTS)
        # The other replica, and any user, read them from the shared ledger.
        assert await _call(cb, "GET", "/v1/consortium/defaults", ALICE) == (200, DEFAULTS)
        assert await _call(cb, "GET", "/admin/defaults", ADMIN) == (200, DEFAULTS)
        status, body = await _call(cb, "PUT", "/admin/defaults", ALICE, DEFAULTS)
        assert status == 403 and body["error"]["code"] == "not_admin"
        bad = {"members": ["demo-analyst", "gpt-nope"], "arbiter": "demo-arbiter"}
        status, body = await _call(ca, "PUT", "/admin/defaults", ADMIN, bad)
        assert status == 400 and body["error"]["param"] == "members[1]", body
        assert "'gpt-nope' is not a model this gateway offers" in body["error"]["message"]
        status, body = await _call(
            ca, "PUT", "/admin/defaults", ADMIN, {**DEFAULTS, "arbiter": "x"}
        )
        assert status == 400 and body["error"]["param"] == "arbiter", body
        status, body = await _call(ca, "PUT", "/admin/defaults", ADMIN, {"members": []})
        assert status == 400 and body["error"]["param"] == "members", body
        # A refused change changed nothing.
        assert await _call(cb, "GET", "/v1/consortium/defaults", ALICE) == (200, DEFAULTS)
    finally:
        for service, client in ((a, ca), (b, cb)):
            await client.close()
            await service.aclose()


async def test_defaults_in_a_redis_ledger_reach_the_other_replica(tmp_path, redis_server):
    (a, ca), (b, cb) = (
        await _replica(tmp_path, redis_server.url),
        await _replica(tmp_path, redis_server.url),
    )
    try:
        assert await _call(ca, "PUT", "/admin/defaults", ADMIN, DEFAULTS) == (200, DEFAULTS)
        assert await _call(cb, "GET", "/v1/consortium/defaults", ALICE) == (200, DEFAULTS)
    finally:
        for service, client in ((a, ca), (b, cb)):
            await client.close()
            await service.aclose()


async def test_prices_put_on_one_replica_price_calls_on_the_other(tmp_path):
    (a, ca), (b, cb) = await _replica(tmp_path), await _replica(tmp_path)
    table = {
        "currency": "EUR",
        "models": {"demo-*": {"input_per_million": 1.0, "output_per_million": 2.0}},
    }
    try:
        status, before = await _call(cb, "GET", "/admin/prices", ADMIN)
        assert status == 200 and "packaged sample" in before["source"]
        status, body = await _call(ca, "PUT", "/admin/prices", ADMIN, table)
        assert status == 200 and body["table"]["currency"] == "EUR", body
        status, after = await _call(cb, "GET", "/admin/prices", ADMIN)
        assert after["source"] == "the ledger (PUT /admin/prices)"
        assert after["table"]["models"] == table["models"]
        assert b.gateway.prices.cost("demo-analyst", 1_000_000, 1_000_000) == 3.0
        bad = {"models": {"demo-*": {"input_per_million": -1, "output_per_million": 2}}}
        status, body = await _call(ca, "PUT", "/admin/prices", ADMIN, bad)
        assert status == 400 and body["error"]["param"] == "models.demo-*.input_per_million"
        status, body = await _call(ca, "PUT", "/admin/prices", ADMIN, {"currency": "euros"})
        assert status == 400 and "ISO 4217" in body["error"]["message"], body
        assert (await _call(cb, "GET", "/admin/prices", ADMIN))[1]["table"]["currency"] == "EUR"
        assert (await _call(ca, "GET", "/admin/audit", ADMIN))[0] == 200
    finally:
        for service, client in ((a, ca), (b, cb)):
            await client.close()
            await service.aclose()
