"""The one-file bundle the widget carries outside Voila (JupyterLab, Notebook, VS Code), in
Debian's Chromium: KaTeX and highlight.js are inside it (``import()`` only defers running
them), and KaTeX's CSS with its fonts arrives in ``widget.css``, which anywidget injects as a
``<style>``. Mounted here with a stand-in for anywidget's model holding one finished turn."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium_lab.widget import assets
from static_site import BLANK_PAGE, serve_folder

from .test_chat_e2e import expect

ROOT = Path(__file__).resolve().parents[2]
CODE = "def area(r):\n    return 3.14159 * r ** 2"
ANSWER = f"The area is $A = \\pi r^2$:\n\n$$\n\\frac{{a}}{{b}}\n$$\n\n```python\n{CODE}\n```\n"

# As anywidget does: widget.css as a <style>, widget.js imported as a module, render({model, el}).
MOUNT = """async ({ turn }) => {
  const style = document.createElement("style");
  style.textContent = await (await fetch("/widget.css")).text();
  document.head.append(style);
  const { default: widget } = await import("/widget.js");
  const state = {
    chart_specs: {},
    config: { models: { "demo-analyst": 1 }, arbiter: "demo-arbiter", mode: "consortium" },
    conversation_id: "c1", error: "", live_turn: {}, models: [], past_runs: [],
    saved_configs: [], status: "idle", turns: [turn], user_name: "alice",
    retention: { max: 90, chosen: null, error: "" },
  };
  // Nothing changes the traits or sends a message here: listeners are never called.
  const model = {
    get: (key) => state[key],
    set: (key, value) => { state[key] = value; },
    on: () => {},
    off: () => {},
    save_changes: () => {},
    send: () => {},
  };
  model.widget_manager = { get_model: async () => model };
  const el = document.createElement("div");
  document.body.append(el);
  widget.render({ model, el });
}"""


@pytest.fixture
def one_file_bundle() -> Iterator[str]:
    if not (assets.STATIC / "widget.js").is_file():
        pytest.skip("front-end bundle not built (npm run build in widgets/)")
    with serve_folder(assets.STATIC) as base:
        yield base + BLANK_PAGE


def test_one_file_bundle_typesets_math_and_highlights_code(one_file_bundle, page):
    fixture = ROOT / "widgets" / "test" / "fixtures" / "turn.json"
    turn = copy.deepcopy(json.loads(fixture.read_text(encoding="utf-8")))
    turn["synthesis"]["synthesis"] = ANSWER
    turn["iterations"][-1]["synthesis"]["synthesis"] = ANSWER  # what the answer shows
    page.goto(one_file_bundle)
    page.evaluate(MOUNT, {"turn": turn})
    answer = page.locator(".cl-synthesis-text")
    expect(answer.locator(".cl-code pre code .hljs-keyword").first).to_have_text("def")
    expect(answer.locator(".cl-math .katex-html").first).to_be_visible()
    assert answer.locator(".cl-math-display .katex-display").count() == 1
    # KaTeX's CSS is there (its own font, its MathML copy clipped away) and its fonts load.
    styled = answer.locator(".cl-math .katex").first.evaluate(
        """(el) => ({font: getComputedStyle(el).fontFamily,
                     mathml: getComputedStyle(el.querySelector('.katex-mathml')).position})"""
    )
    assert "KaTeX_Main" in styled["font"] and styled["mathml"] == "absolute", styled
    page.wait_for_function("() => document.fonts.check('16px KaTeX_Main')")
    assert page.evaluate(
        "async () => { await document.fonts.ready; return [...document.fonts]"
        ".some((f) => f.family.includes('KaTeX') && f.status === 'loaded'); }"
    )
    assert page.outside == [], page.outside
    assert page.errors == [], page.errors
