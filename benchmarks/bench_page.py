"""How soon the chat page and the dashboard are usable, unloaded and under a 4-member stream.

Starts what ``bench_widget.py`` starts (the loopback model server, standalone Voila with a
preheated kernel serving the real notebooks, Debian's Chromium) and measures, each the median
of N fresh browser contexts:

1. page open to interactive with a preheated kernel (``bench_widget.OPEN_SCRIPT``: the widget
   answered ``ready`` and the prompt box and Send are enabled; browser clock since navigation);
2. the same while another page runs a consortium of 4 members streaming (each sample is kept
   only if that stream was still running when the page became interactive);
3. dashboard first chart: navigation to the first Vega chart embedded
   (``.cl-static-chart[data-embedded='true']``), unloaded and under the same stream.

Run: ``.venv/bin/python benchmarks/bench_page.py`` (``--quick``: 2 samples, not 5). Side by
side with the previous commit: ``.venv/bin/python benchmarks/compare.py page`` (it builds the
base commit's widget bundle). Loopback only; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import chromium  # noqa: E402
from bench_widget import (  # noqa: E402
    OPEN_SCRIPT,
    close_tab,
    new_tab,
    page_opens,
    scratch,
    timed_open,
    wait_kernels,
)
from e2e.conftest import _env  # noqa: E402
from e2e.test_chat_e2e import ask, configure  # noqa: E402
from figures import record  # noqa: E402

from _store_writer import build_run_events  # noqa: E402
from fake_openai import ModelScript  # noqa: E402
from helpers import arbiter_reply  # noqa: E402

MEMBERS = 4
TOKENS = 4000
TOKEN_DELAY = 0.05  # 200 s of streaming: long enough for every sample taken under it
CHART_SCRIPT = """
(() => {
  const O = (window.__chart = { first: null });
  const observer = new MutationObserver(() => {
    if (document.querySelector(".cl-static-chart[data-embedded='true']")) {
      O.first = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { subtree: true, childList: true, attributes: true });
})();
"""


def seed_run_log(path: Path, runs: int = 6) -> None:
    """Synthetic runs in the run log, so the dashboard has charts to draw from the start."""
    from consortium_lab.sinks.runlog import RunStore

    store = RunStore(path)
    try:
        for i in range(runs):
            for event in build_run_events(f"seed-{i}", members=3, iterations=2, prompt=f"Q{i}"):
                store.record(event, strict=True)
    finally:
        store.close()


def dashboard_opens(browser: Any, base: str, samples: int, running: Any = None) -> list[float]:
    """Seconds from navigation to the dashboard's first chart, ``samples`` fresh contexts."""
    from consortium_lab.apps import voila as app

    port = int(base.rstrip("/").rsplit(":", 1)[1])
    times = []
    for _ in range(samples):
        url = app.dashboard_url(port)
        seconds, _ = timed_open(browser, base, url, CHART_SCRIPT, "window.__chart.first", 120_000)
        times.append(seconds)
        if running is not None and not running():
            raise RuntimeError("the stream ended before the dashboard sample: raise TOKENS")
    return times


def opens_under_stream(browser: Any, proc: Any, base: str, samples: int) -> tuple[list, Any]:
    """Start a 4-member stream in one page, then open ``samples`` chat pages beside it.
    Returns the open times and the streaming page's tab (still running)."""
    from consortium_lab.apps import voila as app

    port = int(base.rstrip("/").rsplit(":", 1)[1])
    wait_kernels(proc, port, pooled=1)
    stream = new_tab(browser, "")
    page = stream.page
    page.goto(app.chat_url(port))
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    members = ", ".join(f"bench-p{i}" for i in range(1, MEMBERS + 1))
    configure(page, members, "bench-judge", max_iterations=1)
    wait_kernels(proc, port, pooled=1, busy=1)
    ask(page, "Stream a lot.")
    page.wait_for_selector(".cl-member[data-status='streaming']", timeout=90_000)

    def running() -> bool:
        return page.locator(".cl-root").get_attribute("data-status") == "running"

    times = []
    for _ in range(samples):
        wait_kernels(proc, port, pooled=1, busy=1)
        url = app.chat_url(port)
        stamp = "window.__open.interactive"
        seconds, _ = timed_open(browser, base, url, OPEN_SCRIPT, stamp, 90_000)
        times.append(seconds)
        if not running():
            raise RuntimeError("the stream ended before the last page open: raise TOKENS")
    return times, (stream, running)


def main(quick: bool) -> int:
    from consortium_lab.apps import voila as app

    if not chromium.CHROMIUM.exists():
        print(chromium.MISSING, file=sys.stderr)
        return 2
    samples = 2 if quick else 5
    figures: dict[str, list[float]] = {}
    with scratch("consortium-bench-page-", 900) as (models, log):
        seed_run_log(models.home.consortium_home / "runs.db")
        for i in range(1, MEMBERS + 1):
            text = " ".join(f"w{i}x{n}" for n in range(TOKENS))
            models.add_model(f"bench-p{i}", ModelScript(reply=text, token_delay=TOKEN_DELAY))
        models.add_model("bench-judge", ModelScript(reply=arbiter_reply("Done.", 0.95)))
        with (
            chromium.launch() as browser,
            log.open("a") as out,
            app.running(env=_env(models), preheat=True, log=out, timeout=120) as (
                proc,
                base,
            ),
        ):
            figures["open"] = page_opens(browser, proc, base, pooled=1, samples=samples)
            figures["dashboard"] = dashboard_opens(browser, base, samples)
            loaded, (stream, running) = opens_under_stream(browser, proc, base, samples)
            figures["open_stream"] = loaded
            try:
                figures["dashboard_stream"] = dashboard_opens(browser, base, samples, running)
            finally:
                close_tab(stream, base)

    names = {
        "open": ("page open to interactive, preheated (median)", 1.0),
        "open_stream": ("page open to interactive, under a 4-member stream", 1.0),
        "dashboard": ("dashboard first chart (median)", 2.0),
        "dashboard_stream": ("dashboard first chart, under a 4-member stream", 2.0),
    }
    print(f"# page speed: median of {samples} fresh contexts each")
    for key, (label, goal) in names.items():
        median = record(label, statistics.median(figures[key]), "s")
        shown = ", ".join(f"{x:.2f}" for x in figures[key])
        verdict = "met" if median <= goal else "NOT met"
        print(f"{label:<52} {median:6.2f} s  (goal <= {goal:.1f} s: {verdict}; samples {shown})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 samples of each, not 5")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    code = main(args.quick)
    print(f"({time.monotonic() - started:.0f} s in all)")
    raise SystemExit(code)
