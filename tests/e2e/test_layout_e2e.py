"""The chat reads like a chat: after a run the answer is above the fold (desktop and phone), the
consortium's working is folded, the prompt box stays pinned in view, and the page follows the
stream until the reader scrolls up (then "Jump to latest")."""

from __future__ import annotations

import pytest

from .test_chat_e2e import ask, configure, expect, open_chat, wait_status
from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

LONG = "Rayleigh scattering explains the colour of the daytime sky in detail. " * 40


def _add_models(models) -> None:
    models.add_model("lay-a", ModelScript(reply=member_reply(LONG, 0.8), token_delay=0.001))
    models.add_model("lay-b", ModelScript(reply=member_reply(LONG, 0.7), token_delay=0.001))
    models.add_model("lay-c", ModelScript(reply=member_reply(LONG, 0.9), token_delay=0.001))
    models.add_model("lay-judge", ModelScript(reply=arbiter_reply("Short sky answer.", 0.9)))
    slow = member_reply("word " * 2000, 0.5)
    models.add_model("lay-slow", ModelScript(reply=slow, token_delay=0.01))


def _ask_new(page, prompt: str):
    """Ask, and return the new turn (the page may show an earlier conversation's turns)."""
    before = page.locator(".cl-turn").count()
    ask(page, prompt)
    expect(page.locator(".cl-turn")).to_have_count(before + 1, timeout=60_000)
    return page.locator(".cl-turn").nth(before)


IN_VIEWPORT = """(sel) => {
  const el = document.querySelector(sel);
  if (!el) return false;
  const r = el.getBoundingClientRect();
  return r.top >= 0 && r.top < innerHeight && r.bottom > 0;
}"""


def _in_viewport(page, selector: str) -> bool:
    """Whether ``selector`` is on screen now (for what must *stay* where it is)."""
    return bool(page.evaluate(IN_VIEWPORT, selector))


def _comes_into_view(page, selector: str) -> bool:
    """Wait until ``selector`` is on screen: the page scrolls to follow the stream in the
    animation frame after the content lands, so an immediate look can race it."""
    page.wait_for_function(IN_VIEWPORT, arg=selector, timeout=10_000)
    return True


@pytest.mark.parametrize("viewport", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_answer_above_the_fold_working_folded_prompt_pinned(voila, models, page, viewport):
    _add_models(models)
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    open_chat(page, voila)
    configure(page, "lay-a, lay-b, lay-c", "lay-judge", max_iterations=1)
    page.locator(".cl-settings summary").first.click()  # fold the settings again
    turn = _ask_new(page, "Why is the sky blue?")
    assert wait_status(page, turn, "completed") == "completed"
    expect(turn.locator(".cl-synthesis-text")).to_have_text("Short sky answer.")
    working = turn.locator(".cl-working")
    expect(working).not_to_have_attribute("open", "")
    expect(turn.locator(".cl-answer-status")).to_contain_text("3 members · 1 iteration · 90%")
    # the page followed the run: the answer of the last turn is on screen, and so is the prompt
    assert _comes_into_view(page, ".cl-turn:last-of-type .cl-synthesis-text")
    assert _in_viewport(page, ".cl-prompt-input")
    # the working opens on demand, and the prompt box stays pinned while the page scrolls
    working.locator(".cl-working-summary").click()
    expect(turn.locator(".cl-member").first).to_be_visible()
    page.locator(".cl-title").scroll_into_view_if_needed()
    assert _in_viewport(page, ".cl-prompt-input")
    # the members use the width: three members, three columns on a desktop; on a phone one
    # member at a time, under tabs
    columns = page.evaluate(
        """() => new Set([...document.querySelectorAll('.cl-turn:last-of-type .cl-member')]
                   .filter((el) => el.getClientRects().length)
                   .map((el) => Math.round(el.getBoundingClientRect().left))).size"""
    )
    assert columns == (3 if viewport[0] >= 1000 else 1)
    tabs = turn.get_by_role("tab")
    if viewport[0] < 1000:
        expect(tabs).to_have_count(3)
    else:
        expect(tabs.first).to_be_hidden()
    assert page.errors == []


def test_follows_the_stream_until_the_reader_scrolls_up(voila, models, page):
    _add_models(models)
    page.set_viewport_size({"width": 1280, "height": 900})
    open_chat(page, voila)
    configure(page, "lay-slow", "lay-judge", max_iterations=1)
    turn = _ask_new(page, "Stream slowly.")
    streaming = turn.locator(".cl-member[data-status='streaming']")
    expect(streaming).to_have_count(1, timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('.cl-member[data-status=\"streaming\"] .cl-answer')"
        ".innerText.length > 3000"
    )
    # the newest text (the end of the streaming answer) is on screen: the page scrolls in the
    # animation frame after the text lands, so wait for that frame rather than racing it
    page.wait_for_function(
        """() => {
          const r = document.querySelector('.cl-member[data-status="streaming"] .cl-answer')
            .getBoundingClientRect();
          return r.bottom > 0 && r.bottom <= innerHeight;
        }""",
        timeout=10_000,
    )
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_hidden()
    page.locator(".cl-title").scroll_into_view_if_needed()  # the reader scrolls up
    expect(jump).to_be_visible()
    page.wait_for_timeout(500)  # more text streams in: the page stays where the reader is
    assert _in_viewport(page, ".cl-title")
    jump.click()
    expect(jump).to_be_hidden()
    assert _comes_into_view(page, ".cl-prompt-input")
    page.keyboard.press("Escape")  # Escape stops the run
    assert wait_status(page, turn, "cancelled") == "cancelled"
    assert page.errors == []
