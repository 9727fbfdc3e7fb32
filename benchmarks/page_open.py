"""How soon a Voila page of the app is usable: the page-open timing ``bench_widget.py`` and
``bench_page.py`` share.

A sample opens the page in a fresh browser context (no cache, no cookies) once Voila's kernels
are as expected (a warm pool, no kernel of an earlier page left), and reads the browser clock
(``performance.now()``, milliseconds since the navigation started) that an init script stamps:

- the chat page (:data:`OPEN_SCRIPT`): a MutationObserver first sees
  ``.cl-root[data-ready='true']`` (the kernel answered the page's ``ready`` message) with the
  prompt box enabled and the Send button there (it is disabled until something is typed);
- the dashboard (:data:`CHART_SCRIPT`): the first Vega chart is embedded
  (``.cl-static-chart[data-embedded='true']``).

Each page's kernel is shut down and its context closed before the next sample.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from e2e.conftest import LOCAL_PREFIXES  # noqa: E402

OPEN_SCRIPT = """
(() => {
  const O = (window.__open = { ready: null, interactive: null });
  const interactive = () => {
    const root = document.querySelector(".cl-root[data-ready='true']");
    if (!root) return false;
    const box = root.querySelector("textarea.cl-prompt-input");
    const send = root.querySelector("button[data-action='send']");
    // Send stays disabled while the prompt is empty (by design): the page is interactive
    // once the prompt box takes text and Send is there.
    return !!(box && !box.disabled && send);
  };
  const observer = new MutationObserver(() => {
    const t = performance.now();
    if (O.ready === null && document.querySelector(".cl-root[data-ready='true']")) O.ready = t;
    if (O.ready !== null && interactive()) {
      O.interactive = t;
      observer.disconnect();
    }
  });
  observer.observe(document, {
    subtree: true, attributes: true, attributeFilter: ["data-ready", "disabled"],
  });
})();
"""
OPEN_DONE = "() => window.__open.interactive"

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
CHART_DONE = "() => window.__chart.first"


def pooled_kernels(preheat: bool) -> int:
    """The kernels Voila keeps waiting for pages, as the code under test configures it (the
    chat's one, and the dashboard's where that code preheats it too)."""
    if not preheat:
        return 0
    from consortium_lab.apps import voila_config

    return 1 + int(getattr(voila_config, "DASHBOARD_POOL_SIZE", 0))


def kernels(voila: Any) -> list[Any]:
    """Voila's kernel processes (psutil), children of the Voila process."""
    import psutil

    try:
        children = psutil.Process(voila.pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if any("ipykernel" in part for part in child.cmdline()):
                out.append(child)
    return out


def waiting_for_page(kernel: Any, port: int) -> bool:
    """A preheated kernel parked in ``wait_for_request`` holds a websocket to Voila's port."""
    import psutil

    try:
        return any(
            c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port
            for c in kernel.net_connections(kind="tcp")
        )
    except psutil.Error:
        return False


def wait_kernels(voila: Any, port: int, *, pooled: int, busy: int = 0, timeout: float = 60) -> None:
    """Wait until exactly ``pooled`` kernels wait for a page (a warm pool) and ``busy`` other
    kernels run (pages still open): no kernel of an earlier page is left, none is starting."""
    deadline = time.monotonic() + timeout
    while True:
        procs = kernels(voila)
        waiting = sum(waiting_for_page(k, port) for k in procs)
        if waiting == pooled and len(procs) == pooled + busy:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"kernels: {len(procs)} running, {waiting} waiting for a page; "
                f"wanted {pooled} waiting and {busy} more"
            )
        time.sleep(0.1)


@dataclass
class Tab:
    """A page in its own browser context, with what it asked for from outside the machine,
    its JavaScript errors and the URLs of its websockets."""

    context: Any
    page: Any
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)


def new_tab(browser: Any, script: str) -> Tab:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, service_workers="block")
    context.add_init_script(script)
    tab = Tab(context, context.new_page())
    tab.page.on(
        "request",
        lambda r: None if r.url.startswith(LOCAL_PREFIXES) else tab.outside.append(r.url),
    )
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.page.on("websocket", lambda ws: tab.sockets.append(ws.url))
    tab.page.set_default_timeout(60_000)
    return tab


def close_tab(tab: Tab, base: str) -> None:
    """Shut the page's kernel down, then close the browser context.

    Voila's page asks for that itself on unload, but its POST to ``voila/api/shutdown/<id>``
    carries no XSRF token and is refused (403 in Voila's log), so the kernel would live on
    until Voila stops. The benchmark makes the same request with a double-submit token (a
    ``_xsrf`` cookie and the same ``X-XSRFToken`` header), so each sample starts with only the
    kernels it expects.
    """
    try:
        ids = {
            m.group(1)
            for url in tab.sockets
            if (m := re.search(r"/api/kernels/([0-9a-f-]+)/channels", url))
        }
        if ids:
            token = secrets.token_hex(16)
            tab.context.add_cookies([{"name": "_xsrf", "value": token, "url": base}])
            for kernel_id in ids:
                tab.context.request.post(
                    f"{base}voila/api/shutdown/{kernel_id}", headers={"X-XSRFToken": token}
                )
    finally:
        tab.context.close()


def timed_opens(
    browser: Any,
    proc: Any,
    base: str,
    *,
    page: str,
    samples: int,
    pooled: int,
    busy: int = 0,
    still: Callable[[], bool] | None = None,
) -> list[float]:
    """Seconds from navigation to usable, for ``samples`` fresh opens of ``page`` (``"chat"``
    or ``"dashboard"``), each once ``pooled`` kernels wait and ``busy`` others run. ``still``
    (optional) is asked after each sample whether what runs beside it still runs."""
    from consortium_lab.apps import voila as app

    port = int(base.rstrip("/").rsplit(":", 1)[1])
    url, script, done = {
        "chat": (app.chat_url(port), OPEN_SCRIPT, OPEN_DONE),
        "dashboard": (app.dashboard_url(port), CHART_SCRIPT, CHART_DONE),
    }[page]
    times = []
    for _ in range(samples):
        wait_kernels(proc, port, pooled=pooled, busy=busy, timeout=120)
        tab = new_tab(browser, script)
        try:
            tab.page.goto(url)
            tab.page.wait_for_function(f"() => ({done})() !== null", timeout=120_000)
            times.append(tab.page.evaluate(done) / 1000)
        finally:
            close_tab(tab, base)
        if tab.outside or tab.errors:
            raise RuntimeError(f"{page} open: outside requests {tab.outside}, errors {tab.errors}")
        if still is not None and not still():
            raise RuntimeError(f"the stream ended before a {page} sample: raise its tokens")
    return times
