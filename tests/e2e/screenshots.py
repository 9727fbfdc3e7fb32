"""Take the documentation screenshots (docs/chat*.png, docs/dashboard.png) with Playwright.

    .venv/bin/python tests/e2e/screenshots.py

Runs the real app (standalone Voila, the offline demo models, a throw-away home folder) and
Debian's Chromium; no network. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import chromium  # noqa: E402
from consortium_lab.apps import voila as app  # noqa: E402

DOCS = ROOT / "docs"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cl-shots-"))
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LLM_USER_PATH": str(home / "llm"),
        "CONSORTIUM_LAB_HOME": str(home / "consortium-lab"),
        "CONSORTIUM_LAB_DEMO_DELAY": "0.004",
    }
    for name in [n for n in env if n.endswith("_API_KEY")]:
        env.pop(name)
    for theme in ("light", "dark"):
        # Voila's own theme for the page around the chat; the chat's theme switch for the chat
        with (
            app.running(env=env, preheat=False, theme=theme) as (_proc, base),
            chromium.launch() as browser,
        ):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(base + "voila/render/chat.ipynb")
            page.wait_for_selector(".cl-root[data-ready='true']")
            page.get_by_label("Theme").select_option(theme)
            # the page shows the conversation so far: wait for the new turn's end
            before = page.locator(".cl-turn").count()
            box = page.get_by_label("Your prompt")
            box.fill("What are the trade-offs of nuclear power?")
            box.press("Enter")
            new = page.locator(".cl-turn").nth(before)
            new.and_(page.locator(".cl-turn[data-status='completed']")).wait_for()
            # what a person sees after a run: the answer, above the fold
            page.wait_for_timeout(800)
            page.screenshot(path=str(DOCS / ("chat.png" if theme == "light" else "chat-dark.png")))
            if theme == "light":
                # the working opened, members as tabs
                page.set_viewport_size({"width": 390, "height": 844})
                new.locator(".cl-working-summary").click()
                new.locator(".cl-member-tabs").evaluate("(e) => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(800)
                page.screenshot(path=str(DOCS / "chat-phone.png"))
                page.set_viewport_size({"width": 1280, "height": 1500})
                page.goto(base + "voila/render/dashboard.ipynb")
                page.wait_for_selector(".cl-static-chart[data-embedded='true']")
                page.wait_for_timeout(800)
                page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
            browser.close()
    print("screenshots written to", DOCS)


if __name__ == "__main__":
    main()
