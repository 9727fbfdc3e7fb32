"""The admin analytics service behind the real hub's OAuth: a non-admin gets 403, an admin sees
every user's usage (read from the gateway's admin API) drawn by the bundled vega with no request
leaving the machine, the "hash user names" switch shows the gateway's pseudonyms, a quota set
there refuses the user's next call, her quota windows show it, bad form input reads as one plain
sentence, and every page view is in the gateway's audit log."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from consortium_lab.apps.analytics import analytics_env
from consortium_lab.apps.ports import free_port
from consortium_lab.gateway.userhash import user_hash

from .conftest import GATEWAY_ADMIN, OPENER, Hub, start_hub, stop, stop_hub, submit_login, wait_for

expect = pytest.importorskip("playwright.sync_api").expect

TOKENS = {"alice": secrets.token_hex(32)}
SECRET = secrets.token_hex(16)


@pytest.fixture(scope="module")
def analytics_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, str]]:
    root = tmp_path_factory.mktemp("analytics")
    port = free_port()
    token = secrets.token_hex(32)
    hub = start_hub(
        root,
        *(f"--JupyterHub.api_tokens={t}={name}" for name, t in TOKENS.items()),
        CONSORTIUM_HUB_ANALYTICS_URL=f"http://127.0.0.1:{port}",
        CONSORTIUM_HUB_ANALYTICS_TOKEN=token,
    )
    env = analytics_env(
        {
            **os.environ,
            "CONSORTIUM_ANALYTICS_GATEWAY_URL": hub.gateway.url,
            "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN": GATEWAY_ADMIN,
            "CONSORTIUM_LAB_USER_HASH_SECRET": SECRET,
            "CONSORTIUM_ANALYTICS_HASH_USERS": "1",
        },
        hub_api_url=hub.api,
        api_token=token,
    )
    log = root / "analytics.log"
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "consortium_lab.apps.analytics", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/services/consortium-analytics/", proc, log, 60)
        yield hub, f"{hub.url}services/consortium-analytics/"
    finally:
        stop(proc)
        stop_hub(hub)
        print("\nanalytics log (tail):\n" + log.read_text()[-3000:])


def hub_api(hub: Hub, method: str, path: str, body: Any = None) -> Any:
    """The hub's API as alice, an admin."""
    request = urllib.request.Request(
        hub.api + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {TOKENS['alice']}"},
    )
    with OPENER.open(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def chat(hub: Hub, user: str) -> None:
    body = {"model": "demo-analyst", "messages": [{"role": "user", "content": f"Hi from {user}"}]}
    request = urllib.request.Request(
        hub.gateway.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKENS[user]}", "Content-Type": "application/json"},
    )
    with OPENER.open(request, timeout=60) as response:
        assert response.status == 200


def test_only_admins_see_everyone_s_usage_and_names_can_be_hashed(
    analytics_hub: tuple[Hub, str], new_context: Any
):
    hub, url = analytics_hub
    # bob, created by alice like any new user (with the user role), and his own token.
    hub_api(hub, "POST", "/users/bob")
    TOKENS["bob"] = hub_api(hub, "POST", "/users/bob/tokens", {"note": "test"})["token"]
    chat(hub, "alice")
    chat(hub, "bob")
    bob = new_context().new_page()
    submit_login(bob, hub, "bob")
    bob.wait_for_url("**/user/bob/**", timeout=150_000)
    response = bob.goto(url)
    assert response is not None and response.status == 403, response and response.status

    alice = new_context().new_page()
    outside: list[str] = []
    alice.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(("http://127.0.0.1", "blob:", "data:"))
            else outside.append(r.url)
        ),
    )
    submit_login(alice, hub, "alice")
    alice.wait_for_url("**/user/alice/**", timeout=150_000)
    response = alice.goto(url)
    assert response is not None and response.status == 200
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")
    by_user = alice.locator("table[data-by='user']")
    names = by_user.locator("tr td:first-child").all_text_contents()
    assert set(names) == {"alice", "bob"}, names
    expect(alice.locator("#cl-charts svg, #cl-charts canvas").first).to_be_visible(timeout=60_000)
    assert outside == []
    alice.locator(".cl-hash-switch").click()
    alice.wait_for_url("**?hash=1")
    hashed = set(alice.locator("table[data-by='user'] tr td:first-child").all_text_contents())
    assert hashed == {user_hash("alice", SECRET), user_hash("bob", SECRET)}

    # A quota set there refuses alice's next call (she has made one today).
    form = alice.locator(".cl-quota-form")
    form.get_by_label("User").fill("alice")
    form.get_by_label("Requests per day").fill("1")
    form.get_by_role("button", name="Set user quota").click()
    expect(alice.locator(".cl-note")).to_have_text("alice: 1 requests per day.")
    with pytest.raises(urllib.error.HTTPError) as refused:
        chat(hub, "alice")
    assert refused.value.code == 429
    user_form = alice.locator(".cl-user-form")
    user_form.get_by_label("Quota windows of user").fill("alice")
    user_form.get_by_role("button", name="Show").click()
    window = alice.locator("table.cl-windows tr", has_text="requests_per_day")
    expect(window.locator("td")).to_have_text(["requests_per_day", "1", "1", "0", re.compile(".")])
    alice.goto(url)
    form.get_by_label("User").fill("alice")
    form.get_by_label("Requests per day").fill("-3")
    form.get_by_role("button", name="Set user quota").click()
    expect(alice.locator(".cl-note")).to_contain_text("requests_per_day")
    prices = alice.locator(".cl-prices-form")
    prices.locator("textarea").fill('{"models": ')
    prices.get_by_role("button", name="Set prices").click()
    expect(alice.locator(".cl-note")).to_contain_text("The price table is not valid JSON")
    defaults = alice.locator(".cl-defaults-form")
    defaults.get_by_label("Default members").fill("demo-analyst")
    defaults.get_by_label("Default arbiter").fill("no-such-model")
    defaults.get_by_role("button", name="Set defaults").click()
    expect(alice.locator(".cl-note")).to_contain_text("arbiter")
    acl = alice.locator(".cl-acl-form")
    acl.get_by_label("Group").fill("guests")
    acl.get_by_label("Models").fill("demo-*")
    acl.get_by_role("button", name="Set the group's models").click()
    expect(alice.locator(".cl-note")).to_have_text("Group guests may use demo-*.")
    group = alice.locator(".cl-group-quota-form")
    group.get_by_label("Group").fill("guests")
    group.get_by_label("Tokens per day").fill("500")
    group.get_by_role("button", name="Set group quota").click()
    expect(alice.locator(".cl-note")).to_have_text("guests: 500 tokens per day.")

    views = urllib.request.Request(
        hub.gateway.url + "/admin/audit?action=analytics.view&limit=1000",
        headers={"Authorization": f"Bearer {GATEWAY_ADMIN}"},
    )
    with OPENER.open(views, timeout=60) as response:
        entries = json.loads(response.read())["entries"]
    assert {e["actor"] for e in entries} == {"alice"}
    assert {e["target"] for e in entries} == {"overview", "user:alice"}
