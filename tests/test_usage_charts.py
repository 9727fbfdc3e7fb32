"""The analytics charts' specs carry a real gateway's numbers: a scripted mix (a success, a
cache hit, a provider failure) through a real gateway, its admin API read by the analytics
service's client, the Altair specs built from the answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import test_service as svc
from consortium_lab.analysis.usage_charts import MEASURES, usage_charts
from consortium_lab.apps.analytics_gateway import GatewayAdmin, GatewayError

from fake_openai import Fault, ModelScript

PRICES = {"models": {"m": {"input_per_million": 1000.0, "output_per_million": 2000.0}}}


def rows_of(spec: dict[str, Any], chart: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a chart (or a concatenation sharing one dataset) draws."""
    data = chart["data"]
    return list(data["values"]) if "values" in data else list(spec["datasets"][data["name"]])


def test_chart_specs_carry_the_gateway_s_numbers(gateways):
    gateways.provider("m", ModelScript(reply="One two three."))
    gateways.provider("bad", ModelScript(fail_always=Fault.status(400, "nope")))
    service = gateways.start("charts")
    assert service.request("PUT", "/admin/prices", svc.ADMIN, PRICES).status == 200
    assert service.chat(svc.ALICE, "m", "Q").status == 200
    assert service.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is True
    assert service.chat(svc.BOB, "bad", "Q").status >= 400
    records = service.request("GET", "/admin/usage/records", svc.ADMIN).json()["records"]
    assert len(records) == 3, records

    tables = asyncio.run(GatewayAdmin(service.url, svc.ADMIN).usage_tables())
    spec = usage_charts(tables).to_dict()
    outcome, by_user, by_model, by_day = spec["vconcat"]

    calls = {r["outcome"]: r["calls"] for r in rows_of(spec, outcome)}
    assert sum(calls.values()) == 3 and calls["ok"] == 2, calls
    assert by_user["title"] == "By user"
    fields = [c["encoding"]["x"]["field"] for c in by_user["hconcat"]]
    assert fields == [field for field, _ in MEASURES]
    users = {r["user"]: r for r in rows_of(spec, by_user)}
    alice, bob = users["alice"], users["bob"]
    assert (alice["calls"], alice["failed"], alice["cache_hit_rate"]) == (2, 0, 0.5)
    assert (bob["calls"], bob["failed"], bob["cache_hit_rate"]) == (1, 1, 0.0)
    # Tokens and cost are the records' own: the cached call costs nothing.
    mine = [r for r in records if r["user"] == "alice"]
    assert alice["tokens"] == sum(r["input_tokens"] + r["output_tokens"] for r in mine)
    assert alice["tokens"] > 0
    assert alice["cost"] == pytest.approx(sum(r["cost"] or 0 for r in mine))
    assert alice["cost"] > 0
    models = {r["model"]: r for r in rows_of(spec, by_model)}
    assert models["m"]["latency_ms_avg"] > 0
    days = rows_of(spec, by_day)
    assert [d["calls"] for d in days] == [3]


def test_a_refusal_reads_as_the_gateway_s_message(gateways):
    service = gateways.start("refuse")
    admin = GatewayAdmin(service.url, svc.ADMIN)
    with pytest.raises(GatewayError, match="requests_per_day"):
        asyncio.run(admin.call("PUT", "/admin/quotas/users/alice", {"requests_per_day": -3}))
    with pytest.raises(GatewayError, match=r"^The gateway at http://127\.0\.0\.1:9 could not"):
        asyncio.run(GatewayAdmin("http://127.0.0.1:9", "t").usage("user"))
