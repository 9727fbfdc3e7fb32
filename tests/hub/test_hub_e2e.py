"""The *try it* hub as people use it: login through the loopback provider's page, the chat
through jupyter-standaloneproxy and standalone Voila, other people's servers refused.

Timings are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import re
import statistics
from urllib.parse import quote

import pytest

from .conftest import (
    PASSWORD,
    Hub,
    get,
    login_to_chat,
    pss_by_role,
    server_pid,
    submit_login,
)

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)


def test_alice_logs_in_lands_on_the_chat_and_a_demo_consortium_streams(hub: Hub, new_context):
    page = new_context().new_page()
    seconds = login_to_chat(page, hub, "alice")
    print(f"\nalice: login submitted to interactive chat (cold server): {seconds:.2f} s")
    assert re.search(r"/user/alice/voila/render/chat\.ipynb$", page.url)
    # Standalone Voila's pages must not be framed by another site either.
    response = page.request.get(page.url)
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")

    page.get_by_label("Your prompt").fill("Why is the sky blue?")
    page.get_by_label("Your prompt").press("Enter")
    turn = page.locator(".cl-turn").last
    streaming = turn.locator(".cl-member[data-status='streaming'] .cl-answer").first
    expect(streaming).to_be_visible()
    first = len(streaming.inner_text())
    page.wait_for_function(
        """([n]) => [...document.querySelectorAll('.cl-member .cl-answer')]
             .some((el) => el.innerText.length > n)""",
        arg=[first],
    )
    expect(turn).to_have_attribute("data-status", "completed", timeout=120_000)
    # The run is in alice's own run log, in her home under the hub's data folder.
    home = hub.data_dir / "homes" / "alice"
    assert (home / ".local" / "share" / "consortium-lab" / "runs.db").exists()


def test_bob_is_refused_alices_server(hub: Hub, new_context):
    page = new_context().new_page()
    login_to_chat(page, hub, "bob")
    response = page.goto(hub.url + "user/alice/voila/render/chat.ipynb")
    assert response is not None and response.status == 403
    assert "/user/alice/" not in page.url or "403" in page.content()


def test_no_lab_contents_or_terminals_and_the_root_leads_to_the_chat(hub: Hub, new_context):
    context = new_context()
    page = context.new_page()
    login_to_chat(page, hub, "carol")
    for path in ("lab", "api/contents", "api/terminals", "tree", "api/kernels"):
        response = context.request.get(hub.url + f"user/carol/{path}", max_redirects=0)
        assert response.status == 404, f"/user/carol/{path} answered {response.status}"
    root = context.request.get(hub.url + "user/carol/", max_redirects=0)
    assert root.status == 302
    assert root.headers["location"] == "/user/carol/voila/render/chat.ipynb"


def test_a_name_outside_the_pattern_is_refused_with_the_rule_and_nothing_is_created(
    hub: Hub, new_context
):
    hub.add_user("eve@example")
    page = new_context().new_page()
    submit_login(page, hub, "eve@example")
    expect(page.locator("body")).to_contain_text("^[a-z0-9][a-z0-9._-]{0,31}$")
    expect(page.locator("body")).to_contain_text("'eve@example' does not")
    assert not [name for name in hub.hub_users() if name.startswith("eve")]


def test_logout_refuses_the_chat_at_once(hub: Hub, new_context):
    context = new_context()
    page = context.new_page()
    login_to_chat(page, hub, "dave")
    chat = page.url
    page.goto(hub.url + "hub/logout")
    # shutdown_on_logout: the server is gone, and the page asks for a login again.
    response = context.request.get(chat, max_redirects=0)
    assert response.status in (302, 303, 403, 404, 503), response.status
    page.goto(chat)
    assert "/user/dave/voila" not in page.url or page.locator(".cl-root").count() == 0


def test_warm_login_timings(hub: Hub, new_context):
    """Login submitted to interactive chat, with alice's server already running (warm)."""
    seconds = []
    for _ in range(5):
        page = new_context().new_page()
        seconds.append(login_to_chat(page, hub, "alice"))
        page.context.close()
    print(f"\nwarm login to interactive chat, median of 5: {statistics.median(seconds):.2f} s")
    pss = pss_by_role(server_pid(hub, "alice"))
    print(
        "PSS of alice's server (MiB): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in pss.items())
    )
    assert pss["proxy"] > 0 and pss["voila"] > 0 and pss["kernels"] > 0
    status, _ = get(hub.url + "hub/api/")
    assert status == 200


def test_the_lab_profile_is_refused_outside_group_trusted(hub: Hub, new_context):
    hub.add_user("frank")
    page = new_context().new_page()
    page.goto(hub.url + "hub/login?next=" + quote("/hub/spawn/frank?profile=lab"))
    page.get_by_role("button", name=re.compile("Sign in with")).click()
    page.get_by_label("Username").fill("frank")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body")).to_contain_text("only for members of the hub group 'trusted'")
    assert page.locator(".cl-root").count() == 0
