"""The chat page in a real hub, in Chromium: every call through the gateway with the user's
hub token, only the gateway's models, who is signed in and their quota left, a refusal in
words, and no provider key anywhere in the user's server."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    GATEWAY_ADMIN,
    OPENER,
    Hub,
    login_to_chat,
    process_tree,
    server_pid,
    start_hub,
    stop_hub,
)

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)

QUOTA = 1000


@pytest.fixture(scope="module")
def quota_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = start_hub(
        tmp_path_factory.mktemp("hubchat"),
        gateway_settings={"default_quota": {"requests_per_day": QUOTA}},
    )
    try:
        yield running
    finally:
        stop_hub(running)
        print("\nhub log (tail):\n" + running.log_tail(3000))
    assert "Traceback" not in running.gateway.log.read_text()


def ask(page: object, prompt: str) -> object:
    page.get_by_label("Your prompt").fill(prompt)  # type: ignore[attr-defined]
    page.get_by_label("Your prompt").press("Enter")  # type: ignore[attr-defined]
    turn = page.locator(".cl-turn").last  # type: ignore[attr-defined]
    expect(turn).to_have_attribute("data-status", re.compile("completed|failed"), timeout=120_000)
    return turn


def test_the_chat_runs_through_the_gateway_and_says_when_the_quota_is_spent(
    quota_hub: Hub, new_context
):
    page = new_context().new_page()
    login_to_chat(page, quota_hub, "alice")
    bar = page.locator(".cl-hub-bar")
    expect(bar.locator(".cl-hub-user")).to_have_text("alice")
    expect(bar.locator(".cl-hub-quota")).to_contain_text(f"{QUOTA} of {QUOTA} requests today left")
    assert bar.locator(".cl-hub-logout").get_attribute("href") == "/hub/logout"
    # Only the gateway's models are offered: no local demo model.
    labels = page.locator(".cl-model-list .cl-model label").all_text_contents()
    assert labels and all("gw-" in label for label in labels), labels

    turn = ask(page, "Why is the sky blue?")
    expect(turn).to_have_attribute("data-status", "completed")
    # The banner follows the gateway's count once the run is over (the demo consortium may
    # iterate: at least four calls).
    expect(bar.locator(".cl-hub-quota")).not_to_contain_text(f"{QUOTA} of {QUOTA}")
    left = int(bar.locator(".cl-hub-quota").inner_text().split("Quota left: ")[1].split()[0])
    assert left <= QUOTA - 4
    # No process of alice's server (proxy, Voila, the kernels) holds the provider key.
    key = quota_hub.gateway.provider_key.encode()
    pids = process_tree(server_pid(quota_hub, "alice"))
    assert len(pids) >= 3  # the proxy, Voila and at least one kernel
    for pid in pids:
        for name in ("environ", "cmdline"):
            assert key not in Path(f"/proc/{pid}/{name}").read_bytes()

    # An admin lowers alice's quota to what she has used: her next prompt is refused, in words.
    status, _ = call(
        quota_hub,
        "PUT",
        "/admin/quotas/users/alice",
        {"requests_per_day": QUOTA - left},
    )
    assert status == 200
    refused = ask(page, "And why is it dark at night?")
    expect(refused).to_have_attribute("data-status", "failed")
    text = refused.inner_text()
    assert "quota exceeded for user 'alice'" in text, text
    assert f"{QUOTA - left} requests per day" in text and "resets at" in text, text
    assert "Error code" not in text and "Traceback" not in text, text
    expect(bar.locator(".cl-hub-quota")).to_contain_text(f"0 of {QUOTA - left} requests today left")


def call(hub: Hub, method: str, path: str, body: object) -> tuple[int, str]:
    """The gateway's admin API with its admin token."""
    request = urllib.request.Request(
        hub.gateway.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {GATEWAY_ADMIN}", "Content-Type": "application/json"},
    )
    with OPENER.open(request, timeout=60) as response:
        return response.status, response.read().decode()
