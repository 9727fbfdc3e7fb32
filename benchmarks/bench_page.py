"""How soon the chat page and the dashboard are usable, unloaded and under a 4-member stream.

Starts what ``bench_widget.py`` starts (the loopback model server, standalone Voila with a
preheated kernel serving the real notebooks, Debian's Chromium) and measures, each the median
of N fresh browser contexts:

1. page open to interactive with a preheated kernel (timed as ``page_open.py`` says: the
   widget answered ``ready`` and the prompt box and Send are enabled; browser clock since
   navigation);
2. the same while another page runs a consortium of 4 members streaming (each sample is kept
   only if that stream was still running when the page became interactive);
3. dashboard first chart: navigation to the first Vega chart embedded
   (``.cl-static-chart[data-embedded='true']``), with its preheated kernel where the code
   under test preheats one, unloaded and under the same stream.

Run: ``.venv/bin/python benchmarks/bench_page.py`` (``--quick``: 2 samples, not 5). Side by
side with the previous commit: ``.venv/bin/python benchmarks/compare.py page`` (it builds the
base commit's widget bundle). Loopback only; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import chromium  # noqa: E402
from chromium import CHROMIUM  # noqa: E402
from conftest import FakeOpenAI, IsolatedHome  # noqa: E402
from e2e.conftest import _env  # noqa: E402
from e2e.test_chat_e2e import ask, configure  # noqa: E402
from figures import record  # noqa: E402
from page_open import close_tab, new_tab, pooled_kernels, timed_opens, wait_kernels  # noqa: E402

from _store_writer import build_run_events  # noqa: E402
from fake_openai import FakeOpenAIServer, ModelScript  # noqa: E402
from helpers import arbiter_reply  # noqa: E402

MEMBERS = 4
TOKENS = 10_000
# 500 s of streaming: long enough for every sample taken under it, each of which first waits
# for Voila to refill its pools (POOL_FILL_DELAY, then a kernel's start).
TOKEN_DELAY = 0.05


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


def start_stream(browser: Any, proc: Any, base: str) -> tuple[Any, Callable[[], bool]]:
    """Start a 4-member stream in one page; returns its tab (still running) and a check that
    it still runs."""
    from consortium_lab.apps import voila as app

    port = int(base.rstrip("/").rsplit(":", 1)[1])
    pooled = pooled_kernels(True)
    wait_kernels(proc, port, pooled=pooled)
    stream = new_tab(browser, "")
    page = stream.page
    page.goto(app.chat_url(port))
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    members = ", ".join(f"bench-p{i}" for i in range(1, MEMBERS + 1))
    configure(page, members, "bench-judge", max_iterations=1)
    wait_kernels(proc, port, pooled=pooled, busy=1)
    ask(page, "Stream a lot.")
    page.wait_for_selector(".cl-member[data-status='streaming']", timeout=90_000)

    def running() -> bool:
        status = page.locator(".cl-root").get_attribute("data-status")
        if status != "running":
            error = page.locator(".cl-root .cl-error").first.text_content(timeout=5000)
            turn = page.locator(".cl-turn").last.get_attribute("data-status", timeout=5000)
            print(f"the stream's page: {status}, turn {turn}; error: {error!r}", file=sys.stderr)
        return status == "running"

    return stream, running


def main(quick: bool) -> int:
    from consortium_lab.apps import voila as app

    if not CHROMIUM.exists():
        print(chromium.MISSING, file=sys.stderr)
        return 2
    samples = 2 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="consortium-bench-page-"))
    home = IsolatedHome.make(tmp)
    log = tmp / "voila.log"
    seed_run_log(home.consortium_home / "runs.db")
    server = FakeOpenAIServer(max_lifetime=900).start()
    figures: dict[str, list[float]] = {}
    try:
        models = FakeOpenAI(server, home)
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
            pooled = pooled_kernels(True)
            for key, page in (("open", "chat"), ("dashboard", "dashboard")):
                figures[key] = timed_opens(
                    browser, proc, base, page=page, samples=samples, pooled=pooled
                )
            stream, running = start_stream(browser, proc, base)
            try:
                for key, page in (
                    ("open_stream", "chat"),
                    ("dashboard_stream", "dashboard"),
                ):
                    figures[key] = timed_opens(
                        browser,
                        proc,
                        base,
                        page=page,
                        samples=samples,
                        pooled=pooled,
                        busy=1,
                        still=running,
                    )
            finally:
                close_tab(stream, base)
    except Exception:
        with contextlib.suppress(OSError):
            print("voila log (tail):\n" + log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

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
