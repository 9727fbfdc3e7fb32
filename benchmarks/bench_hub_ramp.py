"""Users ramped on a real hub until the chat slows down: 1, 2, 4, 8... people at once.

It starts what the hub tests start (``tests/hub/conftest.py``: the loopback OpenID Connect
provider, JupyterHub in *try it* mode with configurable-http-proxy, the gateway as the hub's
service offering the offline demo models) and Debian's Chromium through Playwright. For each
step N it logs N users in (one browser context each; their servers stay up between steps),
then every one of them sends a prompt at once to the 3-member demo consortium, and each page
stamps, with the browser's own clock, the Send and the moment its turn is complete (the
synthesis). The step's figure is the median Send-to-synthesis time; the ramp stops at the
first step whose median is at least twice the one-user median (or at ``--max-users``).

The figures are compared as ratios against the one-user step, never asserted. Also printed:
the PSS of one user server (proxy, Voila, kernels), from ``/proc``.

Run: ``.venv/bin/python benchmarks/bench_hub_ramp.py [--max-users 8]``. Loopback only;
everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Stamps the turn's completion with performance.now() (the Send is stamped just before it).
STAMP = """
window.__cl = {sent: null, done: null, before: 0};
new MutationObserver(() => {
  const turns = document.querySelectorAll('.cl-turn');
  const last = turns[turns.length - 1];
  if (window.__cl.sent !== null && window.__cl.done === null
      && turns.length > window.__cl.before
      && ['completed', 'failed'].includes(last.getAttribute('data-status'))) {
    window.__cl.status = last.getAttribute('data-status');
    window.__cl.done = performance.now();
  }
}).observe(document, {subtree: true, attributes: true, childList: true});
"""


def step(pages: list[Any], prompt: str) -> list[float]:
    """Every page sends ``prompt`` at once; each one's Send-to-synthesis seconds."""
    for page in pages:
        page.evaluate("window.__cl.sent = null; window.__cl.done = null")
        page.get_by_label("Your prompt").fill(prompt)
    for page in pages:
        page.evaluate(
            "window.__cl.before = document.querySelectorAll('.cl-turn').length;"
            "window.__cl.sent = performance.now()"
        )
        page.get_by_label("Your prompt").press("Enter")
    times = []
    for page in pages:
        page.wait_for_function("window.__cl.done !== null", timeout=600_000)
        status = page.evaluate("window.__cl.status")
        if status != "completed":
            raise RuntimeError(
                f"a turn ended {status}: {page.locator('.cl-turn').last.inner_text()}"
            )
        times.append(page.evaluate("(window.__cl.done - window.__cl.sent) / 1000"))
    return times


def main(max_users: int) -> int:
    import chromium
    from hub.conftest import (
        login_to_chat,
        pss_by_role,
        server_pid,
        start_hub,
        stop_hub,
    )

    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        hub = start_hub(Path(tmp) / "hub", "--JupyterHub.concurrent_spawn_limit=100")
        try:
            with chromium.launch() as browser:
                pages: list[Any] = []
                baseline = None
                n = 1
                while n <= max_users:
                    while len(pages) < n:
                        name = f"ramp{len(pages)}"
                        hub.add_user(name)
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        context.set_default_timeout(300_000)
                        context.add_init_script(STAMP)
                        page = context.new_page()
                        started = time.monotonic()
                        login_to_chat(page, hub, name)
                        print(
                            f"{name}: login to chat {time.monotonic() - started:.1f} s", flush=True
                        )
                        pages.append(page)
                    times = step(pages, f"Step of {n}: why is the sky blue?")
                    median = statistics.median(times)
                    baseline = baseline or median
                    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                    print(
                        f"users {n}: Send-to-synthesis median {median:.2f} s "
                        f"(max {max(times):.2f} s), {median / baseline:.2f}x one user; "
                        f"load average {load}",
                        flush=True,
                    )
                    if n > 1 and median >= 2 * baseline:
                        break
                    n *= 2
                pss = pss_by_role(server_pid(hub, "ramp0"))
                print(
                    "PSS of one user server (MiB): "
                    + ", ".join(f"{k} {v / 1024:.0f}" for k, v in pss.items())
                )
        finally:
            stop_hub(hub)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-users", type=int, default=8, help="stop the ramp here")
    sys.exit(main(parser.parse_args().max_users))
