"""Servers and users going away by themselves: the idle culler (short timeout) and the guest
clean-up, on a hub of their own (a short idle timeout would cull the other tests' servers)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import GATEWAY_ADMIN, Hub, get, login_to_chat, start_hub, stop_hub
from .test_hub_login_audit import svc_get

# Longer than a cold first page on a loaded 2-core machine: the page counts as activity
# only once its answer is complete (seen at 18 s and more with a load average of 30, the
# chat's first cell asking the gateway three times).
IDLE_TIMEOUT = 60


@pytest.fixture(scope="module")
def short_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = start_hub(
        tmp_path_factory.mktemp("short-hub"),
        # The proxy's route activity reaches the hub every 2 s instead of 300 s.
        "--JupyterHub.last_activity_interval=2",
        CONSORTIUM_HUB_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
        CONSORTIUM_HUB_CULL_EVERY="2",
        CONSORTIUM_HUB_GUESTS="1",
        CONSORTIUM_HUB_GUEST_TIMEOUT="5",
    )
    try:
        yield running
    finally:
        stop_hub(running)
        print("\nshort hub log (tail):\n" + running.log_tail(3000))


def running_servers(hub: Hub) -> set[str]:
    with sqlite3.connect(hub.data_dir / "jupyterhub.sqlite") as db:
        rows = db.execute(
            "select u.name from users u join spawners s on s.user_id = u.id "
            "where s.server_id is not null"
        )
        return {row[0] for row in rows}


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(1)


def test_the_culler_stops_an_unused_server_and_spares_a_used_one(short_hub: Hub, new_context):
    used = new_context()
    login_to_chat(used.new_page(), short_hub, "dave")
    dave_started = time.monotonic()
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in used.cookies())
    asset = short_hub.url + "user/dave/voila/static/materialcolors.css"
    assert get(asset, {"Cookie": cookie})[0] == 200
    stop = threading.Event()

    def touch() -> None:
        # dave keeps using his server; configurable-http-proxy counts answers below 300 only.
        while not stop.wait(1):
            get(asset, {"Cookie": cookie})

    toucher = threading.Thread(target=touch, daemon=True)
    toucher.start()
    try:
        idle = new_context()
        login_to_chat(idle.new_page(), short_hub, "carol")
        idle.close()  # carol leaves: no more requests through her route
        started = time.monotonic()
        wait_until(
            lambda: "carol" not in running_servers(short_hub),
            IDLE_TIMEOUT + 60,
            "carol's unused server culled",
        )
        print(f"\ncarol's idle server culled {time.monotonic() - started:.1f} s after she left")
        wait_until(lambda: time.monotonic() - dave_started > IDLE_TIMEOUT + 4, 60, "timeout over")
        # Used all along, longer than the timeout: still running.
        assert "dave" in running_servers(short_hub)
    finally:
        stop.set()
        toucher.join(10)


def test_a_guest_logs_in_and_is_removed_once_idle(short_hub: Hub, new_context):
    context = new_context()
    page = context.new_page()
    page.goto(short_hub.url + "hub/login")
    started = time.monotonic()
    page.get_by_role("button", name="Continue as a guest").click()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=150_000)
    print(f"\nguest: click to interactive chat {time.monotonic() - started:.2f} s")
    name = page.url.split("/user/")[1].split("/")[0]
    assert name.startswith("guest-") and len(name) == len("guest-") + 12
    home = short_hub.data_dir / "homes" / name
    assert home.is_dir()
    with sqlite3.connect(short_hub.data_dir / "jupyterhub.sqlite") as db:
        groups = db.execute(
            "select g.name from groups g join user_group_map m on m.group_id = g.id "
            "join users u on u.id = m.user_id where u.name = ?",
            (name,),
        ).fetchall()
    assert groups == [("guests",)]
    # A guest passes no authenticator, but its login is in the audit log all the same.
    status, body = svc_get(short_hub.gateway.url + "/admin/audit?action=login", GATEWAY_ADMIN)
    assert status == 200, (status, body)
    logins = [e for e in body["entries"] if e["actor"] == name]
    assert [e["detail"] for e in logins] == [{"authenticator": "guest", "admin": False}]
    context.close()
    # The culler stops the idle server, then the clean-up removes the guest and its home.
    wait_until(
        lambda: name not in short_hub.hub_users(),
        IDLE_TIMEOUT + 90,
        "the idle guest removed",
    )
    # The clean-up removes the home after the user: wait for it, as for the user.
    wait_until(lambda: not home.exists(), 60, "the removed guest's home deleted")
    # Everyone else is untouched.
    assert {"carol", "dave"} <= set(short_hub.hub_users())
