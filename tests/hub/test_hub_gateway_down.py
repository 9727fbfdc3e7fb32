"""The gateway killed while the chat streams, in a real hub: the run finishes with its members'
failure naming the gateway, and once the gateway is back the next prompt works."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest

from .conftest import Hub, login_to_chat, start_hub, stop_hub

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def slow_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # Demo tokens every 0.1 s: a member streams long enough to be cut.
    running = start_hub(tmp_path_factory.mktemp("gwdown"), CONSORTIUM_LAB_DEMO_DELAY="0.1")
    try:
        yield running
    finally:
        stop_hub(running)
        print("\nhub log (tail):\n" + running.log_tail(3000))


def test_a_gateway_killed_mid_stream_fails_the_run_naming_it_then_the_chat_recovers(
    slow_hub: Hub, new_context
):
    page = new_context().new_page()
    login_to_chat(page, slow_hub, "alice")
    page.get_by_label("Your prompt").fill("Why is the sky blue?")
    page.get_by_label("Your prompt").press("Enter")
    turn = page.locator(".cl-turn").last
    expect(turn.locator(".cl-member[data-status='streaming'] .cl-answer").first).to_be_visible()
    os.killpg(slow_hub.gateway.proc.pid, signal.SIGKILL)
    slow_hub.gateway.proc.wait(30)
    expect(turn).to_have_attribute("data-status", re.compile("failed|completed"), timeout=180_000)
    text = turn.inner_text()
    assert "/services/consortium-gateway/" in text, text
    assert "Traceback" not in text, text

    slow_hub.gateway.restart()
    before = page.locator(".cl-turn").count()
    page.get_by_label("Your prompt").fill("And now?")
    page.get_by_label("Your prompt").press("Enter")
    again = page.locator(".cl-turn").nth(before)
    # Slow demo tokens and up to three iterations: minutes on a loaded machine.
    expect(again).to_have_attribute("data-status", re.compile("failed|completed"), timeout=400_000)
    expect(again).to_have_attribute("data-status", "completed")
