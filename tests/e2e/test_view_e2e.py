"""The chat page's view in Chromium: settings refused at their field in plain words (focus
kept, the config in effect unchanged), threshold 0 confirmed, the summary line cut with the
whole on hover; the theme switch (with an emulated prefers-color-scheme); the agreement toggle
and legend, whose colours keep AA contrast in light and dark; members as tabs on a phone."""

from __future__ import annotations

import re

from .test_chat_e2e import (
    ask,
    configure,
    expect,
    open_chat,
    open_working,
    wait_status,
)
from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

THRESHOLD = "Threshold must be between 0 and 1, or a percentage up to 100"
WHOLE = "must be a whole number of at least 1"
PYDANTIC = re.compile(r"validation error|Value error|input_value|input_type|\[type=|pydantic")
SAME = "Rayleigh scattering makes short blue wavelengths scatter far more than red ones."
OTHER = "The ocean reflects the sky, and nitrogen molecules scatter blue light strongly."

CONTRAST = """(el) => {
  const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = c.map((v) => v / 255).map((v) =>
      v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const st = getComputedStyle(el);
  const bg = st.backgroundColor;
  if (/rgba\\(.*,\\s*0\\)$/.test(bg) || bg === 'transparent') return null;
  const [a, b] = [lum(rgb(st.color)), lum(rgb(bg))].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def _models(models) -> None:
    models.add_model("v-a", ModelScript(reply=member_reply(SAME, 0.8), token_delay=0.001))
    models.add_model("v-b", ModelScript(reply=member_reply(OTHER, 0.7), token_delay=0.001))
    models.add_model("v-judge", ModelScript(reply=arbiter_reply("Blue scatters most.", 0.9)))


def _ask_new(page, prompt: str):
    """Ask, and return the new turn (the page may show an earlier conversation's turns)."""
    before = page.locator(".cl-turn").count()
    ask(page, prompt)
    expect(page.locator(".cl-turn")).to_have_count(before + 1, timeout=60_000)
    return page.locator(".cl-turn").nth(before)


def _focused_setting(page) -> str | None:
    return page.evaluate("() => document.activeElement?.dataset?.setting ?? null")


def _error_of(page, setting: str):
    box = page.locator(f"[data-setting='{setting}']")
    return page.locator(f"[id='{box.get_attribute('id')}-error'] .cl-field-error-text")


def test_every_refused_value_is_told_at_its_field(voila, models, page):
    _models(models)
    open_chat(page, voila)
    configure(page, "v-a, v-b", "v-judge", max_iterations=3, threshold=0.8)
    summary_before = page.locator(".cl-settings-summary").inner_text()
    cases = [
        ("confidence_threshold", "-1", f"{THRESHOLD} (still 0.8)."),
        ("confidence_threshold", "101", f"{THRESHOLD} (still 0.8)."),
        ("confidence_threshold", "high", f"{THRESHOLD} (still 0.8)."),
        ("max_iterations", "0", f"Maximum iterations {WHOLE} (still 3)."),
        ("max_iterations", "2.5", f"Maximum iterations {WHOLE} (still 3)."),
        ("minimum_iterations", "-2", f"Minimum iterations {WHOLE} (still 1)."),
        (
            "minimum_iterations",
            "5",
            "Minimum iterations (5) cannot be more than maximum iterations (3) (still 1).",
        ),
        ("models", "v-a:0", "Members: the count of v-a must be a whole number of at least 1"),
        ("models", " , ", "Members need at least one model"),
        # checked by the kernel (the page cannot know which models are installed)
        ("models", "no-such-model", "models: unknown or unusable model 'no-such-model'"),
    ]
    for setting, value, message in cases:
        box = page.locator(f"[data-setting='{setting}']")
        box.fill(value)
        box.press("Tab")
        expect(_error_of(page, setting)).to_contain_text(message)
        expect(box).to_have_attribute("aria-invalid", "true")
        expect(box).to_have_value(value)  # marked invalid until fixed, never silently replaced
        page.wait_for_function("(s) => document.activeElement?.dataset?.setting === s", arg=setting)
        assert _focused_setting(page) == setting, (setting, value)
        # the config in effect is unchanged
        expect(page.locator(".cl-settings-summary")).to_have_text(summary_before)
        # fixed: the mark goes
        fix = {"confidence_threshold": "0.8", "max_iterations": "3"}
        box.fill(fix.get(setting, "1" if setting == "minimum_iterations" else "v-a, v-b"))
        box.press("Tab")
        expect(box).not_to_have_attribute("aria-invalid", "true")
    text = page.locator("body").inner_text()
    assert not PYDANTIC.search(text), PYDANTIC.search(text)
    assert page.locator(".cl-error").is_hidden()
    assert page.errors == []


def test_threshold_zero_asks_first(voila, models, page):
    _models(models)
    open_chat(page, voila)
    configure(page, "v-a, v-b", "v-judge", threshold=0.8)
    box = page.locator("[data-setting='confidence_threshold']")
    error = page.locator(f"[id='{box.get_attribute('id')}-error']")
    box.fill("0")
    box.press("Tab")
    expect(error).to_contain_text("the first answer will always be accepted")
    error.get_by_role("button", name="Cancel").click()
    expect(box).to_have_value("0.8")
    expect(error).to_be_hidden()
    box.fill("0")
    box.press("Tab")
    error.get_by_role("button", name="Use it").click()
    expect(error).to_be_hidden()
    # in effect: the next run accepts the first answer, whatever its confidence
    page.locator(".cl-settings summary").first.click()
    turn = _ask_new(page, "Is zero enough?")
    assert wait_status(page, turn, "completed") == "completed"
    expect(turn.locator(".cl-answer-status")).to_contain_text("90% ≥ 0%")


def test_summary_is_one_line_with_the_whole_on_hover(voila, models, page):
    _models(models)
    page.set_viewport_size({"width": 390, "height": 844})
    open_chat(page, voila)
    configure(page, "v-a:3, v-b:2", "v-judge")
    summary = page.locator(".cl-settings-summary")
    full = summary.get_attribute("title")
    assert full and full.startswith("Settings — v-a:3, v-b:2 · arbiter v-judge")
    cut = page.evaluate(
        """() => { const t = document.querySelector('.cl-settings-summary-text');
             const st = getComputedStyle(t);
             return {over: t.scrollWidth > t.clientWidth, ellipsis: st.textOverflow,
                     lines: Math.round(t.getBoundingClientRect().height
                                       / parseFloat(getComputedStyle(t).lineHeight))}; }"""
    )
    assert cut == {"over": True, "ellipsis": "ellipsis", "lines": 1}, cut


def _theme(page) -> tuple[str, str]:
    return tuple(
        page.evaluate(
            """() => { const r = document.querySelector('.cl-root');
             return [r.dataset.theme, getComputedStyle(r).backgroundColor]; }"""
        )
    )


def test_theme_follows_the_system_and_remembers_a_choice(voila, page):
    page.emulate_media(color_scheme="dark")
    open_chat(page, voila)
    select = page.get_by_label("Theme")
    expect(select).to_have_value("system")
    assert _theme(page) == ("dark", "rgb(30, 30, 30)")
    page.emulate_media(color_scheme="light")
    page.wait_for_function("() => document.querySelector('.cl-root').dataset.theme === 'light'")
    assert _theme(page) == ("light", "rgb(255, 255, 255)")
    select.select_option("dark")
    assert _theme(page) == ("dark", "rgb(30, 30, 30)")
    page.reload()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    expect(page.get_by_label("Theme")).to_have_value("dark")
    assert _theme(page)[0] == "dark"  # remembered, though the system is light
    page.get_by_label("Theme").select_option("system")
    assert _theme(page)[0] == "light"
    assert page.errors == []


def test_agreement_toggle_legend_and_contrast(voila, models, page, browser):
    _models(models)
    page.set_viewport_size({"width": 1280, "height": 900})
    open_chat(page, voila)
    configure(page, "v-a:2, v-b", "v-judge", max_iterations=1)
    turn = _ask_new(page, "Why is the sky blue?")
    assert wait_status(page, turn, "completed") == "completed"
    open_working(turn)
    shared = turn.locator(".cl-member mark.cl-hl-shared").first
    expect(shared).to_be_visible()
    root = page.locator(".cl-root")
    expect(root).to_have_attribute("data-highlight", "agreement")  # the desktop's default
    legend = page.locator(".cl-legend")
    expect(legend).to_contain_text("said by several members")
    for theme in ("light", "dark"):
        page.get_by_label("Theme").select_option(theme)
        ratios = [shared.evaluate(CONTRAST)]
        ratios += [m.evaluate(CONTRAST) for m in legend.locator("mark").all()]
        assert all(r is not None and r >= 4.5 for r in ratios), (theme, ratios)
    unique = turn.locator(".cl-member mark.cl-hl-unique").first
    assert unique.evaluate(CONTRAST) is None  # agreement mode: a member's own claims unmarked
    page.get_by_role("button", name="Disagreement").click()
    expect(root).to_have_attribute("data-highlight", "disagreement")
    expect(legend).to_contain_text("said by this member only")
    assert shared.evaluate(CONTRAST) is None
    assert unique.evaluate(CONTRAST) >= 4.5
    page.get_by_role("button", name="Off").click()
    expect(legend).to_be_hidden()
    assert shared.evaluate(CONTRAST) is None and unique.evaluate(CONTRAST) is None
    # a phone starts with highlighting off (a fresh browser: nothing remembered)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        phone = context.new_page()
        phone.goto(voila.chat)
        phone.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
        expect(phone.locator(".cl-root")).to_have_attribute("data-highlight", "off")
    finally:
        context.close()


def test_phone_shows_members_as_tabs(voila, models, page):
    _models(models)
    page.set_viewport_size({"width": 390, "height": 844})
    open_chat(page, voila)
    configure(page, "v-a:2, v-b", "v-judge", max_iterations=1)
    page.locator(".cl-settings summary").first.click()
    turn = _ask_new(page, "Why is the sky blue?")
    assert wait_status(page, turn, "completed") == "completed"
    open_working(turn)
    tabs = turn.get_by_role("tab")
    expect(tabs).to_have_count(3)
    visible = turn.locator(".cl-member:visible")
    expect(visible).to_have_count(1)
    expect(visible).to_have_attribute("data-key", "v-a#1")
    tabs.nth(2).click()
    expect(tabs.nth(2)).to_have_attribute("aria-selected", "true")
    expect(turn.locator(".cl-member:visible")).to_have_attribute("data-key", "v-b#1")
    tabs.nth(2).press("ArrowLeft")
    expect(turn.locator(".cl-member:visible")).to_have_attribute("data-key", "v-a#2")
    # one column: the page is not a stack of full panes
    height = page.evaluate("() => document.documentElement.scrollHeight")
    assert height < 3 * 844, height
    # on a desktop the same turn shows every member side by side, no tabs
    page.set_viewport_size({"width": 1280, "height": 900})
    expect(turn.get_by_role("tab").first).to_be_hidden()
    expect(turn.locator(".cl-member:visible")).to_have_count(3)
