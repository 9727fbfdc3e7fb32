"""Issue 12, item 8 end to end: instances of ``model:n`` are distinct samples through the
gateway *service* (``consortium-lab gateway`` subprocess): the kernel's remote gateway sends
each instance its own request (a seed for instance N > 1), so the service neither merges them
nor serves one instance's cached answer to another."""

from __future__ import annotations

import itertools
import json

from consortium_lab import Gateway
from consortium_lab.apps.connect import connect
from consortium_lab.compat import create_consortium
from test_service import ALICE

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply


def answers(out: dict) -> list[str]:
    return sorted(m["answer"] for m in out["model_responses"])


def test_instances_are_distinct_samples_through_the_gateway_service(gateways, fake_openai):
    count = itertools.count(1)
    gateways.provider("m", ModelScript(reply=lambda _: member_reply(f"Sample {next(count)}.")))
    gateways.provider("judge", ModelScript(reply=arbiter_reply("Joint.", 0.9)))
    service = gateways.start()
    connect(service.url, ALICE, prefix="gw-")
    orchestrator = create_consortium(
        models=["gw-m:2"], arbiter="gw-judge", gateway=Gateway(remote=True), store=False
    )

    first = orchestrator.orchestrate("Sample?", cache="use")
    sent = fake_openai.requests_for("m")
    assert len(sent) == 2
    assert sorted(r.json.get("seed") or 0 for r in sent) == [0, 2]  # instance 2 has its seed
    assert len({json.dumps(r.json, sort_keys=True) for r in sent}) == 2
    assert answers(first) == ["Sample 1.", "Sample 2."]
    assert [m["instance"] for m in first["model_responses"]] == [0, 1]

    # Each instance has its own entry in the service's cache: a cached re-run gives both
    # samples again, never one answer twice.
    again = orchestrator.orchestrate("Sample?", cache="use")
    assert len(fake_openai.requests_for("m")) == 2
    assert answers(again) == ["Sample 1.", "Sample 2."]
