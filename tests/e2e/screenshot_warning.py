"""Take docs/chat-warning.png: a turn whose arbiter output could not be read, as the chat
widget shows it.

    .venv/bin/python tests/e2e/screenshot_warning.py

A real run (the sync-only test models of ``tests/local_model.py``, their arbiter ignoring the
format), folded into the widget's turn data by the widget's own ``turn_view``, rendered by the
built bundle (``static/widget.js``) in Debian's Chromium with a stand-in for anywidget's model.
Not a test: pytest does not collect it.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import chromium  # noqa: E402

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="widget.css"></head><body><div id="root"></div>
<script type="module">
import widget from "./widget.js";
const state = %s;
const handlers = new Map();
const model = {
  get: (k) => state[k], set: (k, v) => { state[k] = v; }, save_changes() {}, send() {},
  on: (e, cb) => handlers.set(e, cb), off() {}, widget_manager: {},
};
widget.render({ model, el: document.getElementById("root") });
setTimeout(() => document.body.dataset.ready = "true", 500);
</script></body></html>"""


def run_turn() -> dict:
    import llm

    from consortium_lab import Consortium, Gateway
    from consortium_lab.widget.turns import turn_view
    from local_model import LocalPlugin

    llm.pm.register(LocalPlugin(), name="screenshot-local-models")
    consortium = Consortium(
        models=["local:2"],
        arbiter="local-noformat",
        gateway=Gateway(cache=None, log_to_llm=False),
        store=False,
        max_iterations=3,
    )
    result = asyncio.run(consortium.run("What is six times seven?"))
    assert result.status == "completed_with_warnings", result.status
    return turn_view(result)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cl-shot-warning-"))
    for name, sub in (("HOME", ""), ("LLM_USER_PATH", "llm"), ("CONSORTIUM_LAB_HOME", "cl")):
        os.environ[name] = str(home / sub)
        (home / sub).mkdir(parents=True, exist_ok=True)
    turn = run_turn()
    site = home / "site"
    site.mkdir()
    static = ROOT / "src" / "consortium_lab" / "static"
    for name in ("widget.js", "widget.css"):
        (site / name).write_bytes((static / name).read_bytes())
    state = {
        "chart_specs": {},
        "config": turn["metadata"].get("config") or {"models": {"local": 2}},
        "conversation_id": "c1",
        "error": "",
        "live_turn": {},
        "models": [],
        "past_runs": [],
        "saved_configs": [],
        "status": "idle",
        "turns": [turn],
    }
    (site / "index.html").write_text(PAGE % json.dumps(state), encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium.launch() as browser:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
            page.wait_for_selector("body[data-ready='true']")
            page.wait_for_selector(".cl-run-warnings")
            page.locator("article.cl-turn").first.screenshot(
                path=str(ROOT / "docs" / "chat-warning.png")
            )
    finally:
        server.shutdown()
    print("written: docs/chat-warning.png")


if __name__ == "__main__":
    main()
