"""A vote turn in the chat page (real Voila, loopback models, Debian's Chromium): the tally
stands where the arbiter's synthesis would, with each answer's votes, share and voters, and
the tie note. Waits are for conditions on the page, never fixed sleeps."""

from __future__ import annotations

import pytest

from consortium_lab import runs

from .test_chat_e2e import ask, last_turn, open_chat, wait_status
from fake_openai import ModelScript
from helpers import member_reply

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=30_000)


def test_a_vote_turn_shows_the_tally_instead_of_an_arbiter(voila, models, page):
    # Two votes each for Bergen and Oslo; Oslo's voters are surer, so Oslo wins the tie.
    models.add_model("vote-a", ModelScript(reply=member_reply("Bergen", 0.6)))
    models.add_model("vote-b", ModelScript(reply=member_reply("Oslo", 0.9)))
    models.add_model("vote-c", ModelScript(reply=member_reply("Trondheim", 0.99)))
    open_chat(page, voila)
    settings = page.locator(".cl-settings")
    if settings.get_attribute("open") is None:
        settings.locator("summary").first.click()
    spec = page.get_by_label("Members (model:count, comma separated)")
    spec.fill("vote-a:2, vote-b:2, vote-c")
    spec.press("Tab")
    page.get_by_label("Mode", exact=True).select_option("vote")
    expect(page.locator(".cl-settings-summary")).to_contain_text(
        "vote-a:2, vote-b:2, vote-c · no arbiter · vote"
    )

    ask(page, "Which is the largest city of Norway?")
    turn = last_turn(page)
    assert wait_status(page, turn, "completed", "completed_with_warnings", "failed") == (
        "completed"
    )
    tally = turn.locator(".cl-vote")
    expect(tally).to_be_visible()
    expect(turn.locator(".cl-synthesis")).to_be_hidden()
    expect(turn.locator(".cl-arbiter-stream")).to_be_hidden()
    expect(tally.locator(".cl-vote-winner")).to_have_text("Oslo")
    expect(tally).to_have_attribute("data-tie", "confidence")
    expect(tally.locator(".cl-vote-tie")).to_have_text(
        "Tie: 2 answers with 2 votes each, broken by the voters' stated confidence."
    )
    rows = tally.locator("tbody tr")
    expect(rows).to_have_count(3)
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(3)]
    assert cells == [
        ["Oslo", "2", "40%", "vote-b#1, vote-b#2"],
        ["Bergen", "2", "40%", "vote-a#1, vote-a#2"],
        ["Trondheim", "1", "20%", "vote-c#1"],
    ]
    expect(turn.locator(".cl-answer-status")).to_contain_text("40% of the votes")
    # the run log holds the same tally, and no arbiter was asked
    run_id = turn.get_attribute("data-run-id")
    result = runs.get(run_id, path=voila.run_log)
    assert result.synthesis is not None and result.synthesis.model == "vote"
    assert [(v.answer, v.count) for v in result.synthesis.votes] == [
        ("Oslo", 2),
        ("Bergen", 2),
        ("Trondheim", 1),
    ]
