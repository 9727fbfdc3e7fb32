"""The chat widget on the real Voila chat page, in headless Chromium, with loopback models.

It starts what the end-to-end tests start (the loopback OpenAI-compatible server of
``tests/fake_openai.py``, standalone Voila through ``consortium_lab.apps.voila.running`` serving the
real ``notebooks/chat.ipynb``, Debian's Chromium through Playwright with the e2e Chromium flags)
and measures:

1. page open to interactive, with a preheated kernel and without (``--no-preheat``): median
   of N fresh browser contexts, timed as ``page_open.py`` says (the widget answered ``ready``,
   the prompt box enabled, Send there). Before each preheated sample the pool is warm (its
   kernels hold Voila's ``wait_for_request`` websocket) and no other kernel runs; before each
   cold sample no kernel runs.
2. the stress test of ``tests/e2e`` (4 members streaming 4,000 tokens each, one iteration):
   time from the kernel's flush of an ``events`` message to its pixels. The kernel stamp is
   the ``date`` of the Jupyter message's header, which jupyter_client writes when the widget
   sends the message (the kernel's wall clock at the flush, ``datetime.now(utc)``, in
   microseconds); the browser reads it, with the message's ``seq``, from the kernel websocket
   (an init script listens on the page's ``WebSocket``: nothing in the widget, its bundle or
   the kernel is changed). When the widget has applied the message (its ``data-messages`` count
   moves), a ``requestAnimationFrame`` callback, queued after the widget's own render
   callback, checks that the end of every member text streamed so far is in that member's
   pane (``.cl-answer``); the next ``requestAnimationFrame`` stamps
   ``performance.timeOrigin + performance.now()``: the frame holding the text was painted.
   Both clocks are this machine's wall clock. The median of each step is printed too:
   kernel -> websocket frame in the page -> applied by the widget -> text in the DOM -> painted.
   Coalescing itself (a token waits up to 50 ms in the kernel for its flush) is not included.
   Also: ``events`` messages received per second (mean between the first and the last, and
   the most in any 1 s window, in the browser and by the kernel's stamps), the longest
   main-thread task from the first message to the last one painted, and while tokens streamed
   (``PerformanceObserver`` ``longtask``, buffered; the browser reports only tasks of 50 ms or
   more), and that each pane's final text equals the model's text (the text the pane shows
   once the reader unfolds the consortium's working, which folds itself when the answer is
   there; ``data-stream-check="exact"``; ``data-streamed-chars``; and the deltas seen on the
   socket). Each pane that differs is named with what differs.

Run: ``.venv/bin/python benchmarks/bench_widget.py`` (``--quick`` for fewer samples). Loopback
only; everything it starts (model server, Voila and its kernels, Chromium) is stopped at the
end, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import chromium  # noqa: E402
from chromium import CHROMIUM  # noqa: E402
from conftest import FakeOpenAI, IsolatedHome  # noqa: E402
from e2e.conftest import _env  # noqa: E402
from e2e.test_chat_e2e import ask, configure, last_turn, open_working  # noqa: E402

from fake_openai import FakeOpenAIServer, ModelScript  # noqa: E402
from helpers import arbiter_reply  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from page_open import close_tab, new_tab, pooled_kernels, timed_opens, wait_kernels  # noqa: E402

MEMBERS = 4
TOKENS = 4000
TOKEN_DELAY = 0.0005  # as in tests/e2e/test_chat_e2e.py::test_stress_four_members_4000_tokens
TARGET_RATE = 20  # consortium_lab.widget.batching.MAX_MESSAGES_PER_SECOND

# Stream: kernel stamp (websocket), applied, text in DOM, painted; long tasks.
STREAM_SCRIPT = r"""
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const B = (window.__bench = {
    msgs: [], longtasks: [], text: {}, frames: { binary: 0, text: 0, other: 0 },
    retries: 0, errors: [], applied: 0,
  });
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        B.longtasks.push([performance.timeOrigin + e.startTime, e.duration]);
      }
    }).observe({ type: "longtask", buffered: true });
  } catch (e) { B.errors.push("longtask: " + e); }

  const decoder = new TextDecoder();
  // jupyter_client writes "2025-01-01T12:00:00.123456Z" (or +00:00): epoch milliseconds.
  const parseDate = (s) => {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/.exec(s || "");
    if (!m) return null;
    return Date.parse(m[1] + (m[3] || "Z")) + (m[2] ? parseFloat(m[2]) * 1000 : 0);
  };
  // A kernel message from a websocket frame: v1.kernel.websocket.jupyter.org (binary) or JSON.
  const parse = (data) => {
    if (typeof data === "string") {
      B.frames.text++;
      const m = JSON.parse(data);
      if (m.channel !== "iopub" || m.header?.msg_type !== "comm_msg") return null;
      return m;
    }
    if (!(data instanceof ArrayBuffer)) { B.frames.other++; return null; }
    B.frames.binary++;
    const view = new DataView(data);
    const n = Number(view.getBigUint64(0, true));
    const offsets = [];
    for (let i = 0; i < n; i++) offsets.push(Number(view.getBigUint64(8 * (i + 1), true)));
    const part = (i) =>
      decoder.decode(new Uint8Array(data, offsets[i], offsets[i + 1] - offsets[i]));
    if (part(0) !== "iopub") return null;
    const header = JSON.parse(part(1));
    if (header.msg_type !== "comm_msg") return null;
    return { header, content: JSON.parse(part(4)) };
  };
  const onFrame = (event) => {
    const received = now();
    let m;
    try { m = parse(event.data); } catch (e) { B.errors.push("parse: " + e); return; }
    const payload = m?.content?.data;
    if (!payload || payload.method !== "custom" || payload.content?.type !== "events") return;
    const checks = [];
    for (const e of payload.content.events || []) {
      if (e.kind !== "member_delta" || (e.channel ?? "text") !== "text" || !e.text) continue;
      const key = `${e.model}#${e.instance ?? 1}`;
      B.text[key] = (B.text[key] || "") + e.text;
      const tail = B.text[key].trimEnd().slice(-24).trim();
      if (tail) checks.push([key, tail]);
    }
    B.msgs.push({
      seq: payload.content.seq, sent: parseDate(m.header.date), received,
      kinds: [...new Set((payload.content.events || []).map((e) => e.kind))], checks,
      applied: null, dom: null, painted: null,
    });
  };
  const Native = window.WebSocket;
  class BenchWebSocket extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", onFrame);  // before the page's own handler
    }
  }
  window.WebSocket = BenchWebSocket;

  const inDom = (m) => {
    const turns = document.querySelectorAll(".cl-turn");
    const turn = turns[turns.length - 1];
    if (!turn) return m.checks.length === 0;
    for (const [key, tail] of m.checks) {
      const pane = [...turn.querySelectorAll(".cl-member")].find((p) => p.dataset.key === key);
      const answer = pane?.querySelector(".cl-answer");
      if (!answer || !answer.textContent.includes(tail)) return false;
    }
    return true;
  };
  // Queued after the widget's render callback (it asked for its frame while applying).
  const watch = (m, tries) => requestAnimationFrame(() => {
    if (!inDom(m)) {
      if (tries > 120) { B.errors.push(`seq ${m.seq}: text never seen`); return; }
      B.retries++;
      watch(m, tries + 1);
      return;
    }
    m.dom = now();
    requestAnimationFrame(() => { m.painted = now(); });
  });
  new MutationObserver((records) => {
    const t = now();
    for (const r of records) {
      const n = Number(r.target.getAttribute("data-messages") || 0);
      while (B.applied < n) {
        const m = B.msgs[B.applied++];
        if (!m) {
          B.errors.push(`applied message ${B.applied} never seen on the websocket`);
          continue;
        }
        m.applied = t;
        watch(m, 0);
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-messages"] });
})();
"""


# -- helpers ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def stress(browser: Any, proc: Any, base: str, texts: dict[str, str]) -> dict[str, Any]:
    """The e2e stress test on a page with a preheated kernel, instrumented: the raw figures."""
    from consortium_lab.apps import voila as app

    port = int(base.rstrip("/").rsplit(":", 1)[1])
    wait_kernels(proc, port, pooled=pooled_kernels(True))
    tab = new_tab(browser, STREAM_SCRIPT)
    page = tab.page
    try:
        page.goto(app.chat_url(port))
        page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
        configure(page, ", ".join(texts), "bench-judge", max_iterations=1)
        # The pool refills once a page took its kernel: let that finish first (it would share
        # the CPU with the stream), as it has by the time a person has typed a prompt.
        wait_kernels(proc, port, pooled=pooled_kernels(True), busy=1)
        ask(page, "Stream a lot.")
        turn = last_turn(page)
        page.wait_for_selector(".cl-turn[data-status='completed']", timeout=90_000)
        # every applied message has had its second frame
        page.wait_for_function(
            "() => window.__bench.msgs.every((m) => m.painted !== null || m.applied === null)",
            timeout=10_000,
        )
        bench: dict[str, Any] = page.evaluate("() => window.__bench")
        bench["messages_attr"] = int(page.locator(".cl-root").get_attribute("data-messages") or 0)
        # The member panes sit in the consortium's working, which folds itself once the
        # answer is there: a folded pane shows nothing (``inner_text`` is empty). Unfold it,
        # as a reader would, after the figures above are taken (it embeds the charts).
        open_working(turn)
        panes = {}
        for model in texts:
            pane = turn.locator(f".cl-member[data-key='{model}#1']")
            panes[model] = {
                "shown": pane.locator(".cl-answer").inner_text().strip(),
                "check": pane.get_attribute("data-stream-check"),
                "streamed": int(pane.get_attribute("data-streamed-chars") or -1),
            }
    finally:
        close_tab(tab, base)
    bench.update(panes=panes, outside=tab.outside, page_errors=tab.errors)
    return bench


# -- main ------------------------------------------------------------------------------------------


def differ(got: str | None, want: str) -> str:
    """Where ``got`` first departs from ``want``, briefly."""
    if got is None:
        return "nothing"
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if at is None:
        at = min(len(got), len(want))
    where = f"first difference at {at:,}: {got[at : at + 24]!r}"
    return f"{len(got):,} chars against {len(want):,}, {where}"


def pane_mismatches(pane: dict[str, Any], socket_text: str | None, text: str) -> list[str]:
    """What differs between the model's text and each thing the run shows of it: the pane's
    text on screen, the widget's own check of its streamed text against the final one, the
    streamed length, and the deltas seen on the kernel's websocket."""
    wrong = []
    if pane["shown"] != text:
        wrong.append("text shown: " + differ(pane["shown"], text))
    if pane["check"] != "exact":
        wrong.append(f"data-stream-check is {pane['check']!r}, not 'exact'")
    if pane["streamed"] != len(text):
        wrong.append(f"data-streamed-chars {pane['streamed']:,}, not {len(text):,}")
    if socket_text != text:
        wrong.append("deltas on the websocket: " + differ(socket_text, text))
    return wrong


def summarise(bench: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    """The figures of the stress run (times in epoch milliseconds in ``bench``)."""
    msgs = bench["msgs"]
    measured = [m for m in msgs if m["checks"] and m["painted"] is not None]

    def gaps(a: str, b: str) -> list[float]:
        return [m[b] - m[a] for m in measured]

    def peak(stamps: list[float]) -> int:
        """The most stamps in any 1-second window."""
        j = best = 0
        for i, t in enumerate(stamps):
            while stamps[j] <= t - 1000:
                j += 1
            best = max(best, i - j + 1)
        return best

    total = gaps("sent", "painted")
    received = [m["received"] for m in msgs]
    span = (received[-1] - received[0]) / 1000
    start, end = received[0], max(m["painted"] or m["received"] for m in msgs)
    tasks = sorted(
        ((d, s) for s, d in bench["longtasks"] if s + d >= start and s <= end), reverse=True
    )
    where = ""
    if tasks:
        where = f"began {(tasks[0][1] - start) / 1000:.2f} s after the first message"
    # while tokens streamed: from the first delta message applied to the last one painted
    tokens = [
        d
        for d, t in tasks
        if measured and t + d >= measured[0]["applied"] and t <= measured[-1]["painted"]
    ]
    problems = list(bench["errors"])
    exact = 0
    for model, text in texts.items():
        wrong = pane_mismatches(bench["panes"][model], bench["text"].get(f"{model}#1"), text)
        exact += not wrong
        problems += [f"{model}: {w}" for w in wrong]
    if bench["messages_attr"] != len(msgs):
        problems.append(f"the widget applied {bench['messages_attr']}, {len(msgs)} seen")
    if bench["outside"]:
        problems.append(f"requests that left the machine: {bench['outside']}")
    if bench["page_errors"]:
        problems.append(f"page errors: {bench['page_errors']}")
    if len(measured) < sum(1 for m in msgs if m["checks"]):
        problems.append("some delta messages were never painted")
    return {
        "messages": len(msgs),
        "span": span,
        "rate": (len(msgs) - 1) / span,
        "peak_received": peak(received),
        "peak_sent": peak(sorted(m["sent"] for m in msgs)),
        "measured": len(measured),
        "median": statistics.median(total),
        "p95": percentile(total, 95),
        "max": max(total),
        "min": min(total),
        "parts": [
            statistics.median(gaps(a, b))
            for a, b in (
                ("sent", "received"),
                ("received", "applied"),
                ("applied", "dom"),
                ("dom", "painted"),
            )
        ],
        "longest": tasks[0][0] if tasks else None,
        "where": where,
        "long_tasks": len(tasks),
        "long_total": sum(d for d, _ in tasks),
        "longest_tokens": max(tokens) if tokens else None,
        "long_tokens": len(tokens),
        "exact": exact,
        "retries": bench["retries"],
        "problems": problems,
    }


def report(
    warm: list[float], cold: list[float], s: dict[str, Any], quick: bool, took: float
) -> None:
    def opens(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"

    longest = (
        "none >= 50 ms"
        if s["longest"] is None
        else f"{s['longest']:.0f} ms ({s['long_tasks']} >= 50 ms, {s['long_total']:.0f} ms in all)"
    )
    tokens = (
        "none >= 50 ms"
        if s["longest_tokens"] is None
        else f"{s['longest_tokens']:.0f} ms ({s['long_tokens']} >= 50 ms)"
    )
    rows = [
        ("page open -> interactive, preheated kernel", opens(warm), "docs/app.md: median 1.1 s"),
        ("page open -> interactive, no preheat", opens(cold), "docs/app.md: median 5.6 s"),
        (
            "events messages received",
            f"{s['rate']:.1f}/s ({s['messages']} in {s['span']:.2f} s), peak {s['peak_received']}"
            f" in 1 s",
            f"<= {TARGET_RATE}/s per widget (kernel side peak {s['peak_sent']} in 1 s)",
        ),
        (
            "kernel flush -> pixels",
            f"median {s['median']:.1f} ms, p95 {s['p95']:.1f} ms, max {s['max']:.1f} ms",
            f"n={s['measured']} delta messages; one frame = 16.7 ms",
        ),
        (
            "  = kernel->socket + ->applied + ->in DOM + ->painted",
            " + ".join(f"{x:.1f}" for x in s["parts"]) + " ms",
            "medians of each step",
        ),
        ("longest main-thread task during the stream", longest, s["where"]),
        ("  of those while tokens streamed", tokens, "first delta applied to last painted"),
        ("final text equals the model's text", f"{s['exact']}/{MEMBERS} panes", ""),
    ]
    print(
        f"# consortium_lab chat widget: real Voila chat page, headless {CHROMIUM}, loopback "
        f"models ({'quick' if quick else 'full'} run, {took:.0f} s)"
    )
    print(
        f"# stress: {MEMBERS} members x {TOKENS:,} tokens, {TOKEN_DELAY * 1000:g} ms a token, "
        "1 iteration"
    )
    width = [max(len(r[i]) for r in rows) for i in (0, 1)]
    for name, value, context in rows:
        print(f"{name:<{width[0]}}  {value:<{width[1]}}  {context}".rstrip())
    if s["min"] < 0:
        print(f"warning: a negative latency ({s['min']:.1f} ms): the clocks disagree")
    if s["retries"]:
        print(f"note: {s['retries']} text checks waited an extra frame")
    for problem in s["problems"]:
        print(f"problem: {problem}")


def main(quick: bool) -> int:
    from consortium_lab.apps import voila as app

    if not CHROMIUM.exists():
        print(chromium.MISSING, file=sys.stderr)
        return 2
    samples = 2 if quick else 5
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="consortium-bench-widget-"))
    home = IsolatedHome(
        root=tmp,
        home=tmp / "home",
        config=tmp / "home" / ".config",
        data=tmp / "home" / ".local" / "share",
        llm_user_path=tmp / "llm",
        consortium_home=tmp / "consortium-lab",
    )
    for path in (home.home, home.config, home.data, home.llm_user_path, home.consortium_home):
        path.mkdir(parents=True, exist_ok=True)
    log = tmp / "voila.log"
    server = FakeOpenAIServer(max_lifetime=600).start()
    try:
        models = FakeOpenAI(server, home)
        texts = {}
        for i, letter in enumerate("abcd"[:MEMBERS], start=1):
            model = f"bench-s{i}"
            texts[model] = " ".join(f"{letter}{n}" for n in range(TOKENS))
            models.add_model(model, ModelScript(reply=texts[model], token_delay=TOKEN_DELAY))
        models.add_model("bench-judge", ModelScript(reply=arbiter_reply("Done.", 0.95)))
        env = _env(models)
        with chromium.launch() as browser, log.open("a") as out:
            with app.running(env=env, preheat=True, log=out, timeout=120) as (proc, base):
                warm = timed_opens(
                    browser,
                    proc,
                    base,
                    page="chat",
                    samples=samples,
                    pooled=pooled_kernels(True),
                )
                bench = stress(browser, proc, base, texts)
            with app.running(env=env, preheat=False, log=out, timeout=120) as (proc, base):
                cold = timed_opens(browser, proc, base, page="chat", samples=samples, pooled=0)
    except Exception:
        with contextlib.suppress(OSError):
            print("voila log (tail):\n" + log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    s = summarise(bench, texts)
    report(warm, cold, s, quick, time.monotonic() - started)
    return 0 if s["exact"] == MEMBERS and not s["problems"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 page opens of each kind, not 5")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl+C, so everything started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main(args.quick))
