"""A hub restart with servers running (``cleanup_servers`` and ``cleanup_proxy`` off, as a
deployment runs): the open chat page keeps working, the server and its run log are the same,
a reloaded page shows every run, and a config saved before the restart is there and loads."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from typing import Any

import pytest

from .conftest import login_to_chat, process_tree, restart_hub, server_pid, start_hub, stop_hub

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)
SAVED_ARBITER, OTHER_ARBITER = "gw-demo-skeptic", "gw-demo-optimist"


def ask(page: object, prompt: str) -> None:
    before = page.locator(".cl-turn").count()  # type: ignore[attr-defined]
    page.get_by_label("Your prompt").fill(prompt)  # type: ignore[attr-defined]
    page.get_by_label("Your prompt").press("Enter")  # type: ignore[attr-defined]
    turn = page.locator(".cl-turn").nth(before)  # type: ignore[attr-defined]
    expect(turn).to_have_attribute("data-status", re.compile("completed|failed"), timeout=120_000)
    expect(turn).to_have_attribute("data-status", "completed")


def open_settings(page: Any) -> None:
    settings = page.locator(".cl-settings")
    if settings.get_attribute("open") is None:
        settings.locator("summary").first.click()


def choose_arbiter(page: Any, arbiter: str) -> None:
    open_settings(page)
    page.get_by_label("Arbiter", exact=True).select_option(arbiter)
    expect(page.locator(".cl-settings-summary")).to_contain_text(f"arbiter {arbiter}")


def test_a_hub_restart_keeps_the_open_chat_its_server_and_its_runs(tmp_path, new_context):
    hub = start_hub(tmp_path / "hub", keep_servers=True)
    pids: list[int] = []
    try:
        page = new_context().new_page()
        login_to_chat(page, hub, "alice")
        # A config saved before the restart (its arbiter not the chat's default).
        choose_arbiter(page, SAVED_ARBITER)
        page.get_by_label("Name for save / clone").fill("before-restart")
        page.get_by_label("Save the current configuration under the name given").click()
        saved = page.locator(".cl-settings select option[value='before-restart']")
        expect(saved).to_have_count(1)
        ask(page, "Before the restart?")
        pid = server_pid(hub, "alice")
        pids = process_tree(pid)
        restart_hub(hub)
        # The same server, still running, and the open page still talks to it.
        assert server_pid(hub, "alice") == pid and os.path.exists(f"/proc/{pid}")
        ask(page, "After the restart?")
        # A fresh page load reaches the server through the proxy that kept running, and the
        # chat restored from the run log holds both runs.
        page.reload()
        page.wait_for_selector(".cl-root[data-ready='true']", timeout=150_000)
        expect(page.locator(".cl-turn")).to_have_count(2)
        # The saved config is there after the restart, and loads and runs.
        expect(saved).to_have_count(1)
        choose_arbiter(page, OTHER_ARBITER)
        page.get_by_label("Saved configuration", exact=True).select_option("before-restart")
        page.get_by_label("Load the selected saved configuration").click()
        expect(page.locator(".cl-settings-summary")).to_contain_text(f"arbiter {SAVED_ARBITER}")
        ask(page, "With the saved config?")
    finally:
        # cleanup_servers is off: stop alice's server (its own session) before the hub.
        for child in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        stop_hub(hub)
        print("\nhub log (tail):\n" + hub.log_tail(3000))
