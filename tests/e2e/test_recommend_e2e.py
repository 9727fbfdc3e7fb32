"""The "for prompts like this" hint in Chromium: shown beside the model picker with its support
count, says when there is not enough history, and "Use these" applies it.

The run log the chat kernel reads is written through the run-log API (two topics, see
``tests/recommend_data.py``); every wait is for a condition on the page.
"""

from __future__ import annotations

import uuid

import pytest

from consortium_lab.sinks.runlog import RunStore
from recommend_data import COOKING_PROMPTS, PYTHON_PROMPTS, record_topic_run, script_topic_models

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)  # conditions, not timings: generous for a loaded machine


def test_hint_beside_the_picker_and_use_applies_it(page, voila, models):
    script_topic_models(models)
    with RunStore(voila.run_log, recover=False) as store:
        for prompt in PYTHON_PROMPTS + COOKING_PROMPTS:
            record_topic_run(store, uuid.uuid4().hex, prompt)

    page.goto(voila.chat)
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    hint = page.locator(".cl-models .cl-recommend")  # inside the Members fieldset
    use = hint.get_by_role("button", name="Use these members: py-expert, chef")

    # Typed with the settings closed: asked for when the picker is opened.
    page.get_by_label("Your prompt").fill("What is the capital of France?")
    page.locator(".cl-settings summary").first.click()
    expect(hint).to_have_attribute("data-state", "no-history")
    expect(hint).to_contain_text(
        "Not enough history for prompts like this: 0 similar past runs, at least 5 needed."
    )
    expect(hint.locator("button")).to_be_hidden()

    page.get_by_label("Your prompt").fill("How do I shuffle a python list?")
    expect(hint).to_have_text(
        "For prompts like this: py-expert, chef (5 similar past runs)Use these"
    )
    expect(hint).to_have_attribute("data-support", "5")
    expect(hint).to_be_visible()
    # The chat reopened the log's last conversation (py-expert and chef): start from chef alone.
    spec = page.get_by_label("Members (model:count, comma separated)")
    spec.fill("chef")
    spec.press("Tab")
    expect(page.locator("input[data-model='py-expert']")).not_to_be_checked()
    use.click()
    expect(page.locator("input[data-model='py-expert']")).to_be_checked()
    expect(page.locator("input[data-model='chef']")).to_be_checked()
    expect(page.get_by_label("Members (model:count, comma separated)")).to_have_value(
        "py-expert, chef"
    )
    assert page.errors == [] and page.outside == []
