"""The chat in hub mode (``CONSORTIUM_LAB_GATEWAY_URL`` set): a real gateway service before the
loopback model server, its models only, the user and quota left in the banner, refusals in
words. The browser side in a real hub is in tests/hub/."""

from __future__ import annotations

import asyncio
from typing import Any

from consortium_lab.apps import voila
from consortium_lab.apps.hub_chat import GatewayChatWidget, quota_text
from consortium_lab.apps.ports import free_port
from test_service import ADMIN, ALICE

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply


def _parts(page: Any) -> tuple[str, GatewayChatWidget]:
    banner, chat = page.children
    assert isinstance(chat, GatewayChatWidget)
    return banner.value, chat


async def test_the_chat_offers_the_gateway_s_models_only_and_shows_user_and_quota(
    gateways, fake_openai, monkeypatch
):
    gateways.provider("m1", ModelScript(reply=member_reply("One.", 0.9)))
    gateways.provider("m2", ModelScript(reply=member_reply("Two.", 0.9)))
    gateways.provider("judge", ModelScript(reply=arbiter_reply("Joint answer.", 0.95)))
    service = gateways.start(default_quota={"requests_per_day": 3})
    defaults = {"members": ["m1", "m2"], "arbiter": "judge"}
    assert service.request("PUT", "/admin/defaults", ADMIN, defaults).status == 200
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_URL", service.url)
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_TOKEN", ALICE)
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    page = voila.chat_widget(restore=False)
    banner, chat = _parts(page)
    ids = sorted(m["id"] for m in chat.models)
    # The demo models are registered in this process, yet only the gateway's are offered.
    assert ids == ["gw-judge", "gw-m1", "gw-m2"]
    assert "Signed in as <b class='cl-hub-user'>alice</b>" in banner
    assert "3 of 3 requests today left" in banner
    # The chat starts from the gateway's defaults.
    assert chat.config["models"] == {"gw-m1": 1, "gw-m2": 1}
    assert chat.config["arbiter"] == "gw-judge"
    assert "href='/hub/logout'" in banner
    result = await chat.ask("What is it?")
    assert result.status == "completed", result
    banner, _ = _parts(page)
    # Two members and the synthesis: three calls.
    assert "0 of 3 requests today left" in banner, banner
    for name in ("m1", "m2", "judge"):
        assert fake_openai.requests_for(name)
    # Over quota: the gateway's own sentence, not an HTTP dump; the model server got nothing.
    before = {name: len(fake_openai.requests_for(name)) for name in ("m1", "m2", "judge")}
    refused = await chat.ask("And now?")
    failures = [m.error for m in refused.iterations[0].members] if refused.iterations else []
    message = " ".join(str(f) for f in failures) + " " + str(refused.error or "")
    assert "Error code" not in message and "{" not in message, message
    assert "requests_per_day" in message or "requests per day" in message, message
    assert {n: len(fake_openai.requests_for(n)) for n in before} == before


async def test_a_gateway_killed_mid_stream_fails_the_run_naming_it_and_the_next_prompt_works(
    gateways, fake_openai, monkeypatch
):
    slow = ModelScript(reply=member_reply("Slow " * 200, 0.9), token_delay=0.05)
    gateways.provider("m1", slow)
    gateways.provider("judge", ModelScript(reply=arbiter_reply("Joint answer.", 0.95)))
    service = gateways.start()
    assert (
        service.request(
            "PUT", "/admin/defaults", ADMIN, {"members": ["m1"], "arbiter": "judge"}
        ).status
        == 200
    )
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_URL", service.url)
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_TOKEN", ALICE)
    _, chat = _parts(voila.chat_widget(restore=False))
    running = asyncio.ensure_future(chat.ask("Take your time."))
    # Event-driven: the provider has the member's request, and its stream has started.
    while not fake_openai.requests_for("m1"):
        assert not running.done(), running.result()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    service.port = int(service.url.rsplit(":", 1)[1])
    assert service.process is not None
    service.process.kill()
    result = await running
    assert result.status in ("failed", "completed"), result
    errors = [str(m.error) for m in result.iterations[0].members if m.error]
    assert errors and all(service.url in e for e in errors), errors
    # Back on the same port: the next prompt works.
    service.process.wait(10)
    service.start()
    slow.token_delay = 0.0
    again = await chat.ask("Again, quickly.")
    assert again.status == "completed" and again.text == "Joint answer.", again


def test_no_token_unreachable_or_refused_say_so_with_the_url(gateways, monkeypatch):
    monkeypatch.delenv("CONSORTIUM_LAB_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    down = f"http://127.0.0.1:{free_port()}/services/consortium-gateway/"
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_URL", down)
    page = voila.chat_widget()
    assert "The chat cannot start" in page.value and "No token for the gateway at " + down in (
        page.value
    )
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "some-token")
    page = voila.chat_widget()
    assert "cannot reach the gateway at http://127.0.0.1:" in page.value.lower(), page.value
    service = gateways.start()
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_URL", service.url)
    page = voila.chat_widget()
    assert f"The gateway at {service.url}/v1 answered 401: Invalid API key." in page.value
    assert service.request("GET", "/admin/quotas", ADMIN).status == 200


def test_quota_text_names_each_limited_window():
    me = {
        "usage": {
            "requests_per_day": {
                "used": 2,
                "limit": 5,
                "remaining": 3,
                "resets_at": "2026-12-01T00:00:00+00:00",
            },
            "tokens_per_minute": {"used": 0, "limit": None, "remaining": None},
        }
    }
    assert quota_text(me) == "3 of 5 requests today left (resets 00:00 UTC)"
    assert quota_text({"usage": {}}) == "no limit"
