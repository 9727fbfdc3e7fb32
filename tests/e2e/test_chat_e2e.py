"""The chat page as a person uses it: real standalone Voila serving notebooks/chat.ipynb, models
on the loopback server, Debian's Chromium through Playwright.

Every wait is for a condition on the page (never a fixed sleep that a slow machine could
miss); timing figures are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consortium_lab import runs

from fake_openai import ModelScript
from helpers import arbiter_reply, last_user_text, member_reply

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=30_000)  # conditions, not timings: generous for a loaded machine

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = [
    line.replace("\\n", "\n").replace("\\t", "\t")
    for line in (ROOT / "tests" / "xss_payloads.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
ANSWER_A = (
    "Rayleigh scattering makes short blue wavelengths scatter far more than red ones, so the "
    "daytime sky looks blue from every direction. " * 4
).strip()
ANSWER_B = (
    "Sunlight is scattered by air molecules and the short blue wavelengths scatter the most, "
    "which is why the sky looks blue. " * 4
).strip()


def open_chat(page, voila) -> float:
    """Open the chat and wait until the widget answered the page's `ready`; returns seconds."""
    started = time.monotonic()
    page.goto(voila.chat)
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    return time.monotonic() - started


def configure(page, members: str, arbiter: str, **numbers: float) -> None:
    """Set members (``model:count`` text), arbiter and numeric fields through the settings."""
    settings = page.locator(".cl-settings")
    if settings.get_attribute("open") is None:
        settings.locator("summary").first.click()
    spec = page.get_by_label("Members (model:count, comma separated)")
    spec.fill(members)
    spec.press("Tab")
    page.get_by_label("Arbiter", exact=True).select_option(arbiter)
    labels = {
        "threshold": "Confidence threshold (0–1)",
        "max_iterations": "Maximum iterations",
        "min_iterations": "Minimum iterations",
    }
    for name, value in numbers.items():
        box = page.get_by_label(labels[name], exact=True)
        box.fill(str(value))
        box.press("Tab")
    expect(page.locator(".cl-settings-summary")).to_contain_text(f"{members} · arbiter {arbiter}")


def ask(page, prompt: str) -> None:
    box = page.get_by_label("Your prompt")
    box.fill(prompt)
    box.press("Enter")


def last_turn(page):
    return page.locator(".cl-turn").last


def wait_status(page, turn, *statuses: str, timeout: float = 90_000) -> str:
    pattern = "|".join(re.escape(s) for s in statuses)
    expect(turn).to_have_attribute("data-status", re.compile(f"^({pattern})$"), timeout=timeout)
    return turn.get_attribute("data-status")


def open_working(turn) -> None:
    """Unfold the consortium's working, which folds itself once the answer is there."""
    expect(turn.locator(".cl-working")).not_to_have_attribute("open", "")
    turn.locator(".cl-working-summary").click()
    expect(turn.locator(".cl-working")).to_have_attribute("open", "")


def judge_reply(body) -> str:
    """First iteration: low confidence, asks for another; second: confident."""
    if "Iteration 1 synthesis:" in last_user_text(body):
        return arbiter_reply("Blue light scatters most.", 0.92, areas=("none",))
    return arbiter_reply("First draft: scattering.", 0.55, needs_iteration=True, areas=("why",))


def test_chat_streams_iterates_stops_reloads_and_exports(voila, models, page):
    models.add_model("e2e-a", ModelScript(reply=member_reply(ANSWER_A, 0.8), token_delay=0.02))
    models.add_model("e2e-b", ModelScript(reply=member_reply(ANSWER_B, 0.7), token_delay=0.02))
    models.add_model("e2e-judge", ModelScript(reply=judge_reply, token_delay=0.002))
    slow = member_reply("word " * 1500, 0.5)
    models.add_model("e2e-slow", ModelScript(reply=slow, token_delay=0.03))

    opened = open_chat(page, voila)
    print(f"\npage open to interactive (preheated kernel): {opened:.2f} s")
    configure(page, "e2e-a:2, e2e-b", "e2e-judge", threshold=0.8, max_iterations=3)

    # -- a run: member panes stream, a chart point per iteration --------------------------
    ask(page, "Why is the sky blue?")
    turn = last_turn(page)
    streaming = turn.locator(".cl-member[data-status='streaming']").first
    expect(streaming).to_be_visible(timeout=60_000)
    first = len(streaming.locator(".cl-answer").inner_text())
    page.wait_for_function(
        """([n]) => [...document.querySelectorAll('.cl-member[data-status="streaming"] .cl-answer')]
             .some((el) => el.innerText.length > n)""",
        arg=[first],
    )
    chart = turn.locator(".cl-chart[data-chart='confidence']")
    expect(chart).to_have_attribute("data-points", "1", timeout=60_000)
    expect(chart).to_have_attribute("data-points", "2", timeout=60_000)
    expect(chart).to_have_attribute("aria-label", "Synthesis confidence per iteration")
    assert wait_status(page, turn, "completed", "failed") == "completed"
    expect(turn.locator(".cl-timeline button")).to_have_count(2)
    expect(turn.locator(".cl-synthesis-text")).to_have_text("Blue light scatters most.")
    # the answer first; the members are in the working, folded once the answer is there
    open_working(turn)
    panes = turn.locator(".cl-member")
    expect(panes).to_have_count(3)
    for i in range(3):
        pane = panes.nth(i)
        expect(pane).to_have_attribute("data-status", "done")
        expected = ANSWER_A if "e2e-a" in pane.get_attribute("data-key") else ANSWER_B
        assert pane.locator(".cl-answer").inner_text().strip() == expected
    # two instances of e2e-a agree word for word: shared spans are highlighted
    assert turn.locator("mark.cl-hl-shared").count() > 0
    # earlier iterations stay viewable
    turn.locator(".cl-timeline button", has_text="Iteration 1").click()
    expect(turn.locator(".cl-synthesis-text")).to_have_text("First draft: scattering.")
    run_id = turn.get_attribute("data-run-id")

    # -- word clouds: folded away (nothing embedded) until opened, then one per member ----
    clouds = turn.locator("details.cl-wordclouds")
    expect(clouds).to_have_attribute("data-members", "3")
    assert clouds.get_attribute("open") is None
    expect(clouds.locator(".cl-chart")).to_have_count(0)
    clouds.locator("summary").click()
    embedded = clouds.locator(".cl-chart[data-embedded='true']")
    expect(embedded).to_have_count(3)
    first_cloud = clouds.locator(".cl-chart[data-member='e2e-a#1']")
    expect(first_cloud).to_have_attribute("aria-label", re.compile(r"^Word cloud of e2e-a#1: "))
    expect(first_cloud.locator("svg text", has_text="rayleigh")).to_have_count(1)
    assert int(first_cloud.get_attribute("data-points")) > 5

    # -- the cost estimate next to Send: (3 members + arbiter) x 3 iterations ------------
    estimate = page.locator(".cl-estimate")
    expect(estimate).to_have_attribute("data-calls", "12")
    expect(estimate).to_contain_text("about 12 calls")
    page.get_by_label("Your prompt").fill("A draft")
    expect(estimate).to_have_attribute("data-state", "shown")
    assert page.get_by_role("button", name="Send").get_attribute("aria-describedby") == (
        estimate.get_attribute("id")
    )
    page.get_by_label("Your prompt").fill("")

    # -- per-member options: invalid JSON refused inline, naming the member --------------
    member = page.locator(".cl-member-settings[data-member='e2e-b']")
    member.locator("summary").click()
    options = page.get_by_label("Options for e2e-b (JSON)")
    options.fill("{temperature: 0.5}")
    options.press("Tab")
    expect(member.locator(".cl-field-error").first).to_contain_text("Options for e2e-b")
    expect(options).to_have_attribute("aria-invalid", "true")
    options.fill('{"temprature": 0.5}')  # valid JSON, but not an option of the model
    options.press("Tab")
    expect(member.locator(".cl-field-error").first).to_contain_text("temprature")
    options.fill('{"temperature": 0.5}')
    options.press("Tab")
    expect(member.locator("summary")).to_contain_text("options")
    expect(options).not_to_have_attribute("aria-invalid", "true")
    options.fill("")
    options.press("Tab")
    expect(member.locator("summary")).to_have_text("e2e-b")

    # -- stop a run -----------------------------------------------------------------------
    configure(page, "e2e-slow", "e2e-judge")
    ask(page, "Count slowly.")
    turn = last_turn(page)
    expect(turn.locator(".cl-member[data-status='streaming']")).to_have_count(1, timeout=60_000)
    page.get_by_role("button", name="Stop").click()
    assert wait_status(page, turn, "cancelled") == "cancelled"
    models.wait_for(lambda: "e2e-slow" in models.disconnects, timeout=30)

    # -- export: the download is the run log's export -------------------------------------
    first_turn = page.locator(f".cl-turn[data-run-id='{run_id}']")
    with page.expect_download() as info:
        first_turn.get_by_role("button", name=re.compile("as JSON")).click()
    download = info.value
    assert download.suggested_filename == f"consortium-run-{run_id}.json"
    exported = json.loads(Path(download.path()).read_text())
    assert exported == json.loads(runs.export(run_id, path=voila.run_log))
    assert exported["synthesis"]["synthesis"] == "Blue light scatters most."
    assert exported["metadata"]["iteration_count"] == 2

    # -- reload: a new kernel rebuilds the conversation from the run log ------------------
    started = time.monotonic()
    page.reload()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    print(f"reload to interactive: {time.monotonic() - started:.2f} s")
    turns = page.locator(".cl-turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0)).to_have_attribute("data-status", "completed")
    expect(turns.nth(1)).to_have_attribute("data-status", "cancelled")
    expect(turns.nth(0).locator(".cl-synthesis-text")).to_have_text("Blue light scatters most.")
    # a restored turn's working is folded, its charts drawn when it is opened
    chart = turns.nth(0).locator(".cl-chart[data-chart='confidence']")
    expect(chart).not_to_have_attribute("data-embedded", "true")
    open_working(turns.nth(0))
    expect(chart).to_have_attribute("data-points", "2")

    # -- a run cut off by a reload shows as interrupted -----------------------------------
    configure(page, "e2e-slow", "e2e-judge")
    ask(page, "Count slowly again.")
    expect(last_turn(page).locator(".cl-member[data-status='streaming']")).to_have_count(1)
    page.reload()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    expect(page.locator(".cl-turn")).to_have_count(3)
    assert wait_status(page, last_turn(page), "interrupted", "cancelled", timeout=10_000)

    assert page.outside == [], page.outside
    assert page.errors == [], page.errors


def test_xss_corpus_renders_inert(voila, models, page):
    """Every payload of tests/xss_payloads.txt as a member's answer, its thought process and
    the arbiter's synthesis, analysis, dissent and refinement areas: no script runs and nothing
    is requested from outside."""
    corpus = "\n\n".join(PAYLOADS)
    thinking = "\n\n".join(p for p in PAYLOADS if "<thinking>" not in p)
    models.add_model(
        "e2e-xss-member",
        ModelScript(reply=f"<thinking>{thinking}</thinking>\n<answer>{corpus}</answer>"),
    )
    models.add_model("e2e-xss-plain", ModelScript(reply=corpus, chunk_words=3))
    areas = "".join(f"<area>{p}</area>" for p in PAYLOADS[:20])
    arbiter = (
        f"<synthesis_output><analysis>{corpus}</analysis><dissent>{corpus}</dissent>"
        f"<synthesis>{corpus}</synthesis><confidence>0.9</confidence>"
        f"<refinement_areas>{areas}</refinement_areas>"
        "<needs_iteration>false</needs_iteration></synthesis_output>"
    )
    models.add_model("e2e-xss-judge", ModelScript(reply=arbiter, chunk_words=5))

    open_chat(page, voila)
    configure(page, "e2e-xss-member, e2e-xss-plain", "e2e-xss-judge", max_iterations=1)
    ask(page, "Show me something dangerous.")
    turn = last_turn(page)
    assert wait_status(page, turn, "completed", "failed") == "completed"
    # open every fold so everything is rendered and laid out
    for summary in turn.locator("summary").all():
        if summary.is_visible():
            summary.click()
    turn.hover()
    page.wait_for_timeout(1500)  # give any event (onerror, onload, ontoggle) time to fire
    found = page.evaluate(
        """() => {
          const root = document.querySelector('.cl-root');
          const bad = [];
          // anywhere in the widget: nothing that runs or loads
          for (const el of root.querySelectorAll('script, iframe, object, embed, img, link,'
               + ' meta, base, style, video, audio, source, math, form:not(.cl-prompt)')) {
            if (el.tagName === 'FORM' && el.closest('.cl-chart')) continue; // vega-embed's own
            if (el.tagName.toLowerCase() === 'math' && el.closest('.cl-math')) continue; // KaTeX
            bad.push(el.tagName.toLowerCase());
          }
          for (const el of root.querySelectorAll('svg')) {
            if (!el.closest('.cl-chart, .cl-math')) bad.push('svg outside a chart or formula');
          }
          for (const el of root.querySelectorAll('*')) {
            for (const a of el.attributes) {
              if (/^on/i.test(a.name)) bad.push(`${el.tagName}[${a.name}]`);
            }
          }
          // inside model text: no URL but plain http(s) links, no styling hooks
          for (const box of root.querySelectorAll('.cl-md, .cl-raw, .cl-user-prompt')) {
            for (const el of box.querySelectorAll('*')) {
              for (const a of el.attributes) {
                if (/javascript:|data:|vbscript:/i.test(a.value)
                    || ['src', 'srcset', 'background', 'poster', 'ping', 'id',
                        'name', 'action', 'formaction', 'xlink:href'].includes(a.name)
                    // KaTeX's output (its own sanitiser profile) may style and class itself
                    || (a.name === 'style'
                        && (!el.closest('.cl-math') || /url|expression/i.test(a.value)))
                    || (a.name === 'class' && !el.closest('.cl-math')
                        && !/^(cl-(hl|img-alt|you|code|btn|math)|hljs|language-)/.test(a.value))
                    || (a.name === 'href' && !/^https?:[/][/]/i.test(a.value))) {
                  bad.push(`${el.tagName}[${a.name}=${a.value}]`);
                }
              }
            }
          }
          const links = [...root.querySelectorAll('.cl-md a[href]')].map((a) => a.rel);
          return {bad, links, hits: window.__xss_hits, shown: root.innerText.length};
        }"""
    )
    assert found["hits"] == [], found["hits"]
    assert found["bad"] == [], found["bad"]
    assert found["links"] and all(rel == "noopener noreferrer nofollow" for rel in found["links"])
    assert found["shown"] > 1000  # the text itself is shown
    # the page's own controls are intact (no payload escaped its pane or clobbered the UI)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert page.locator(".cl-root").count() == 1
    assert page.outside == [], page.outside
    assert page.errors == [], page.errors


def test_stress_four_members_4000_tokens(voila, models, page):
    """4 members streaming 4,000 tokens each: the text on screen ends complete and exact, the
    streamed text equals the final text, and messages stay coalesced."""
    texts = {}
    for i, letter in enumerate("abcd", start=1):
        model = f"e2e-s{i}"
        # short tokens: 4,000 of them stay under the default output cap (8192 tokens, counted
        # as characters / 4 while streaming)
        texts[model] = " ".join(f"{letter}{n}" for n in range(4000))
        models.add_model(model, ModelScript(reply=texts[model], token_delay=0.0005))
    models.add_model("e2e-s-judge", ModelScript(reply=arbiter_reply("Done.", 0.95)))
    open_chat(page, voila)
    configure(page, ", ".join(texts), "e2e-s-judge", max_iterations=1)
    before = int(page.locator(".cl-root").get_attribute("data-messages") or 0)
    ask(page, "Stream a lot.")
    turn = last_turn(page)
    expect(turn.locator(".cl-member[data-status='streaming']").first).to_be_visible()
    started = time.monotonic()
    expect(turn.locator(".cl-member[data-status='done']")).to_have_count(4, timeout=120_000)
    elapsed = time.monotonic() - started
    assert wait_status(page, turn, "completed") == "completed"
    root = page.locator(".cl-root")
    messages = int(root.get_attribute("data-messages")) - before
    print(f"\nstress: {messages} messages in {elapsed:.2f} s = {messages / elapsed:.1f}/s")
    open_working(turn)
    for model, text in texts.items():
        pane = turn.locator(f".cl-member[data-key='{model}#1']")
        assert pane.locator(".cl-answer").inner_text().strip() == text
        # every delta arrived: the streamed text was the model's text exactly
        assert pane.get_attribute("data-stream-check") == "exact"
        assert int(pane.get_attribute("data-streamed-chars")) == len(text)
    assert messages / elapsed <= 25, (messages, elapsed)
    assert page.outside == [] and page.errors == []


def test_dashboard_renders_from_the_run_log(voila, page):
    page.goto(voila.dashboard)
    page.wait_for_selector(".cl-static-chart[data-embedded='true']", timeout=90_000)
    expect(page.get_by_text("Your consortium dashboard")).to_be_visible()
    expect(page.get_by_text("Combinations you ran")).to_be_visible()
    assert page.outside == [] and page.errors == []


@pytest.mark.timeout(180)
def test_demo_command_serves_the_chat(models, tmp_path):
    """`consortium-lab demo` starts Voila on 127.0.0.1 and prints the chat's URL."""
    import urllib.request

    env = {**models.env(), "CONSORTIUM_LAB_DEMO_DELAY": "0"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "consortium-lab"), "demo", "--no-preheat"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"Consortium chat: (http://127\.0\.0\.1:\d+/\S+)", line)
            url = match.group(1) if match else None
        assert url, "no URL printed"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=90) as response:
            html = response.read().decode()
        assert response.status == 200 and "jupyter-config-data" in html
        assert "cdn.jsdelivr.net" not in html  # the consortium template: no CDN icon font
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_closing_the_page_shuts_its_kernel_down(voila, browser):
    """Voila's unload beacon must reach the server (no XSRF refusal), or kernels pile up."""
    context = browser.new_context()
    page = context.new_page()
    open_chat(page, voila)
    before = voila.log.read_text().count("Kernel shutdown")
    page.goto("about:blank")  # leaving the page fires its unload beacon, as closing a tab does
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = voila.log.read_text()
        if log.count("Kernel shutdown") > before:
            break
        time.sleep(0.2)
    context.close()
    assert log.count("Kernel shutdown") > before, log[-3000:]
    assert "'_xsrf' argument missing" not in log
