"""The gateway killed while the chat streams, in a real hub, behind the loopback model server:
one member is still streaming when it is killed, the other is done. Only the cut member fails,
with a message naming the gateway; the arbiter, through the restarted gateway, synthesizes
from the member that answered, and the run log has the run finished with that member failed."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from consortium_lab import runs

from .conftest import GATEWAY_ADMIN, OPENER, Hub, login_to_chat, start_hub, stop_hub
from fake_openai import FakeOpenAIServer, ModelScript
from helpers import arbiter_reply, member_reply

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)

QUICK, SLOW, JUDGE = "lb-quick", "lb-slow", "lb-judge"


@pytest.fixture(scope="module")
def models() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer(max_lifetime=900).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lb_hub(tmp_path_factory: pytest.TempPathFactory, models: FakeOpenAIServer) -> Iterator[Hub]:
    entries = [
        {"model_id": m, "model_name": m, "api_base": models.base_url, "api_key_name": "openai"}
        for m in (QUICK, SLOW, JUDGE)
    ]
    running = start_hub(
        tmp_path_factory.mktemp("gwdown"),
        gateway_settings={"models": ["lb-*"]},
        gateway_options={"llm_files": {"extra-openai-models.yaml": yaml.safe_dump(entries)}},
    )
    key = running.gateway.provider_key
    models.add_model(QUICK, ModelScript(reply=member_reply("Quick and sure.", 0.8), api_key=key))
    # Streams for minutes (a word every 0.25 s): still streaming when the gateway is killed.
    slow = member_reply("slowly " * 600, 0.7)
    models.add_model(SLOW, ModelScript(reply=slow, token_delay=0.25, api_key=key))
    synthesis = arbiter_reply("Synthesized from the quick one.", 0.95)
    models.add_model(JUDGE, ModelScript(reply=synthesis, api_key=key))
    try:
        put_defaults(running, {"members": [QUICK, SLOW], "arbiter": JUDGE})
        yield running
    finally:
        stop_hub(running)
        print("\nhub log (tail):\n" + running.log_tail(3000))


def put_defaults(hub: Hub, defaults: dict[str, Any]) -> None:
    """The chat starts from the gateway's defaults (set with its admin API)."""
    request = urllib.request.Request(
        hub.gateway.url + "/admin/defaults",
        data=json.dumps(defaults).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {GATEWAY_ADMIN}", "Content-Type": "application/json"},
    )
    with OPENER.open(request, timeout=60) as response:
        assert response.status == 200


def test_a_gateway_killed_mid_stream_fails_only_the_cut_member_and_the_run_finishes(
    lb_hub: Hub, models: FakeOpenAIServer, new_context
):
    page = new_context().new_page()
    login_to_chat(page, lb_hub, "alice")
    page.get_by_label("Your prompt").fill("Why is the sky blue?")
    page.get_by_label("Your prompt").press("Enter")
    turn = page.locator(".cl-turn").last
    # The quick member is done, the slow one streams: kill the gateway now.
    models.wait_for(lambda: QUICK in models.completed and models.active_for(SLOW) > 0, timeout=300)
    expect(turn.locator(".cl-member[data-status='streaming'] .cl-answer").first).to_be_visible()
    os.killpg(lb_hub.gateway.proc.pid, signal.SIGKILL)
    lb_hub.gateway.proc.wait(30)
    # Back on its port and ledger: the arbiter's call, refused meanwhile, goes through it
    # (the chat's remote gateway waits up to 60 s for it: the printed time shows the margin).
    started = time.monotonic()
    lb_hub.gateway.restart()
    print(f"\ngateway restarted in {time.monotonic() - started:.1f} s")
    expect(turn).to_have_attribute("data-status", re.compile("failed|completed"), timeout=300_000)
    text = turn.inner_text()
    assert "Traceback" not in text, text
    expect(turn).to_have_attribute("data-status", "completed")
    assert "Synthesized from the quick one." in text, text
    failed = turn.locator(".cl-member[data-status='failed']")
    expect(failed).to_have_count(1)
    # Its pane is folded once the run is done: its text, shown or not.
    message = failed.text_content() or ""
    assert "/services/consortium-gateway/" in message, message
    assert len(models.requests_for(JUDGE)) == 1
    assert len(models.requests_for(SLOW)) == 1  # cut, never asked again

    # alice's run log: finished, the slow member failed naming the gateway.
    home = lb_hub.data_dir / "homes" / "alice"
    log = home / ".local" / "share" / "consortium-lab" / "runs.db"
    (row,) = runs.list(path=log)
    assert row["status"] == "completed", row
    result = runs.get(row["id"], path=log)
    members = {m.model: m for m in result.iterations[0].members}
    assert members[f"gw-{QUICK}"].error is None
    assert "/services/consortium-gateway/" in (members[f"gw-{SLOW}"].error or "")
    assert result.text == "Synthesized from the quick one."
