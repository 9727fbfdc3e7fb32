"""The usual chat controls in Debian's Chromium: copy (answer, member, code block) with the
clipboard permission granted, highlighted code no smaller than the body text, math rendered by
the bundled KaTeX, regenerate past the response cache (counted on the loopback server), retry
after a failure, and edit-and-resend that keeps the old turn and survives a reload."""

from __future__ import annotations

from consortium_lab.sinks.runlog import RunStore

from .test_chat_e2e import ask, configure, expect, open_chat, wait_status
from fake_openai import Fault, ModelScript
from helpers import arbiter_reply, member_reply

CODE = "def area(r):\n    return 3.14159 * r ** 2"
MEMBER = (
    "The area of a circle is $A = \\pi r^2$, and Euler says\n\n$$\ne^{i\\pi} + 1 = 0\n$$\n\n"
    f"In Python:\n\n```python\n{CODE}\n```\n\nThat is **all**."
)
SYNTHESIS = "Use **$\\pi r^2$**:\n\n```python\nprint(area(2))\n```"


def _ask_new(page, prompt: str):
    before = page.locator(".cl-turn").count()
    ask(page, prompt)
    expect(page.locator(".cl-turn")).to_have_count(before + 1, timeout=60_000)
    return page.locator(".cl-turn").nth(before)


def _clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def test_copy_code_and_math(voila, models, page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=voila.base[:-1])
    models.add_model("ctl-math", ModelScript(reply=member_reply(MEMBER, 0.8)))
    models.add_model("ctl-math-judge", ModelScript(reply=arbiter_reply(SYNTHESIS, 0.9)))
    open_chat(page, voila)
    configure(page, "ctl-math", "ctl-math-judge", max_iterations=1)
    turn = _ask_new(page, "Area of a circle?")
    assert wait_status(page, turn, "completed") == "completed"
    turn.locator(".cl-working-summary").click()
    member = turn.locator(".cl-member").first
    # code: highlighted, with a language label, no smaller than the text around it
    code = member.locator(".cl-code pre code")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    expect(member.locator(".cl-code-lang")).to_have_text("python")
    sizes = member.evaluate(
        """(el) => {
          const size = (sel) => parseFloat(getComputedStyle(el.querySelector(sel)).fontSize);
          return {code: size('.cl-code code'), body: size('.cl-answer p')};
        }"""
    )
    assert sizes["code"] >= sizes["body"], sizes
    # math: KaTeX's HTML laid out with its own (bundled) fonts, and MathML for readers
    formula = member.locator(".cl-math .katex-html").first
    expect(formula).to_be_visible()
    assert member.locator(".cl-math-display .katex-display").count() == 1
    page.wait_for_function("() => document.fonts.check('16px KaTeX_Main')")
    assert page.evaluate(
        "async () => { await document.fonts.ready; return [...document.fonts]"
        ".some((f) => f.family.includes('KaTeX') && f.status === 'loaded'); }"
    )
    # copy: each code block's text, the member's and the answer's Markdown source
    member.locator(".cl-code-head .cl-copy").click()
    expect(member.locator(".cl-code-head .cl-copy")).to_have_text("Copied")
    assert _clipboard(page) == CODE + "\n"
    member.locator(".cl-member-head .cl-copy").click()
    expect(member.locator(".cl-member-head .cl-copy")).to_have_text("Copied")
    assert _clipboard(page) == MEMBER
    turn.locator(".cl-turn-actions .cl-copy").click()
    expect(turn.locator(".cl-turn-actions .cl-copy")).to_have_text("Copied")
    assert _clipboard(page) == SYNTHESIS
    assert page.outside == [], page.outside
    assert page.errors == [], page.errors


def test_regenerate_bypasses_the_cache_and_retry_after_a_failure(voila, models, page):
    models.add_model("ctl-regen", ModelScript(reply=member_reply("Blue, by scattering.", 0.8)))
    models.add_model("ctl-judge", ModelScript(reply=arbiter_reply("Blue.", 0.9)))
    open_chat(page, voila)
    configure(page, "ctl-regen", "ctl-judge", max_iterations=1)
    turn = _ask_new(page, "Regenerate me?")
    assert wait_status(page, turn, "completed") == "completed"
    first_id = turn.get_attribute("data-run-id")
    assert len(models.requests_for("ctl-regen")) == 1
    count = page.locator(".cl-turn").count()
    turn.locator("[data-action='regenerate']").click()
    last = page.locator(".cl-turn").nth(count - 1)
    expect(last).not_to_have_attribute("data-run-id", first_id, timeout=60_000)
    assert wait_status(page, last, "completed") == "completed"
    # a fresh answer: the model was asked again, though the same call is in the cache
    assert len(models.requests_for("ctl-regen")) == 2
    expect(page.locator(".cl-turn")).to_have_count(count)

    # a failed turn is retried in place (the failed run stays in the run log)
    models.script("ctl-judge").fail_always = Fault.status(400, "bad request", should_retry=False)
    failed = _ask_new(page, "Fail first?")
    assert wait_status(page, failed, "failed") == "failed"
    failed_id = failed.get_attribute("data-run-id")
    models.script("ctl-judge").fail_always = None
    failed.locator("[data-action='retry']").click()
    retried = page.locator(".cl-turn").last
    expect(retried).not_to_have_attribute("data-run-id", failed_id, timeout=60_000)
    assert wait_status(page, retried, "completed") == "completed"
    expect(retried.locator(".cl-user-prompt")).to_contain_text("Fail first?")
    assert RunStore(voila.run_log).get_run_row(failed_id)["status"] == "failed"
    assert page.errors == [], page.errors


def test_edit_and_resend_keeps_the_old_turn_and_survives_reload(voila, models, page):
    models.add_model("ctl-edit", ModelScript(reply=member_reply("An answer.", 0.8)))
    models.add_model("ctl-edit-judge", ModelScript(reply=arbiter_reply("Answered.", 0.9)))
    open_chat(page, voila)
    page.get_by_role("button", name="New chat").click()
    configure(page, "ctl-edit", "ctl-edit-judge", max_iterations=1)
    one = _ask_new(page, "One?")
    assert wait_status(page, one, "completed") == "completed"
    two = _ask_new(page, "Two?")
    assert wait_status(page, two, "completed") == "completed"
    old_id = two.get_attribute("data-run-id")
    two.locator("[data-action='edit']").click()
    editor = two.get_by_label("Edited prompt")
    expect(editor).to_have_value("Two?")
    editor.fill("Two, edited?")
    two.get_by_role("button", name="Ask again").click()
    prompts = page.locator(".cl-turn .cl-user-prompt")
    expect(prompts).to_have_count(2)
    expect(prompts.nth(1)).to_contain_text("Two, edited?", timeout=60_000)
    assert wait_status(page, page.locator(".cl-turn").nth(1), "completed") == "completed"
    expect(prompts.nth(0)).to_contain_text("One?")

    # the old turn is kept in the run log, in the conversation it belonged to
    store = RunStore(voila.run_log)
    old = store.get_run_row(old_id)
    assert old["prompt"] == "Two?" and old["status"] == "completed"
    edited_id = page.locator(".cl-turn").nth(1).get_attribute("data-run-id")
    edited = store.get_run_row(edited_id)
    assert edited["conversation_id"] != old["conversation_id"] and edited["turn"] == 2

    # a reload shows the branch: the shared first turn, then the edited one
    page.reload()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    prompts = page.locator(".cl-turn .cl-user-prompt")
    expect(prompts).to_have_count(2)
    expect(prompts.nth(0)).to_contain_text("One?")
    expect(prompts.nth(1)).to_contain_text("Two, edited?")
    assert page.errors == [], page.errors
