"""What a preheated Voila kernel does before its page asks for it, and the wait for that page.

The app notebooks call these (through :mod:`consortium_lab.apps.voila`) before
:func:`wait_for_page`: whatever they do is off the page's path, since Voila runs the notebook
that far when it preheats the kernel, and the rest when a page asks.
"""

from __future__ import annotations

import contextlib
import os

__all__ = [
    "DASHBOARD_MODULES",
    "FIRST_RUN_MODULES",
    "wait_for_page",
    "warm_up",
    "warm_up_dashboard",
]


# What a first run imports on its way to the first token (the retry library, metrics, the
# answer cache, the lean transport, the llm log writer): imported by warm_up() instead.
FIRST_RUN_MODULES = (
    "tenacity",
    "diskcache",
    "aiohttp",
    "orjson",
    "consortium_lab.gateway.metrics",
    "consortium_lab.gateway.lean",
    "consortium_lab.gateway.lean_errors",
    "consortium_lab.gateway.llm_log_writer",
)


def warm_up() -> None:
    """Do before the page is asked for what the chat's first run would otherwise do on its way
    to the first token: import the library and what a run imports lazily, load ``llm``'s model
    plugins, and open the run log (its file and migrations).

    A chat kernel never runs ``llm -m <saved consortium>``, so llm-consortium's plugin is not
    loaded (it imports scikit-learn: ~85 MB in every kernel); its prompt templates are read as
    files. Set ``CONSORTIUM_LAB_CHAT_PLUGINS=all`` to load every plugin anyway."""
    from consortium_lab.service.preheat import preheat

    if os.environ.get("CONSORTIUM_LAB_CHAT_PLUGINS", "") != "all":
        import llm.plugins

        if not llm.plugins._loaded:  # pluggy skips a blocked name when it loads entry points
            llm.plugins.pm.set_blocked("llm_consortium")
    from consortium_lab.config.catalog import list_models
    from consortium_lab.widget import chat as widget  # noqa: F401
    from consortium_lab.widget.chart_specs import chart_specs

    list_models()
    # Every chat builds its live charts' specs first thing: altair's import and its schema
    # (~1-3 s) would otherwise be paid after the page asked.
    chart_specs()
    from consortium_lab.engine.plugins import resolve_run_log

    # The page opens its own; this one creates the file and applies the migrations first.
    with contextlib.suppress(Exception):  # the page reports a run log it cannot open
        close = getattr(resolve_run_log(None), "close", None)
        if close is not None:
            close()
    # Last: the imports a run would make lazily, then the kernel's start-up heap set aside from
    # the garbage collector, as the gateway service does (a full collection otherwise walks
    # llm, the openai SDK, pydantic and altair, ~0.2 s with the page's stream waiting).
    preheat(FIRST_RUN_MODULES, freeze=True, missing_ok=True)


DASHBOARD_MODULES = (
    "pandas",
    "ipywidgets",
    "consortium_lab.runs",
    "consortium_lab.configs",
    "consortium_lab.analysis.dashboard",
    "consortium_lab.widget.vega",
)


def warm_up_dashboard() -> None:
    """What :func:`dashboard` needs before its page asks: its imports (pandas, altair,
    ipywidgets, the run log) and altair's Vega-Lite schema, loaded by building the chat's
    chart specs once (the first validated spec loads it).

    Every module here is one the dashboard cannot draw without, so a missing one raises
    now rather than being skipped. The heap is not frozen: the dashboard draws once and
    streams nothing that a full collection could stall."""
    from consortium_lab.service.preheat import preheat
    from consortium_lab.widget.chart_specs import build_specs

    preheat(DASHBOARD_MODULES, freeze=False, missing_ok=False)
    build_specs(["0.8"])  # in this process: it loads altair's Vega-Lite schema


def wait_for_page() -> None:
    """In a preheated Voila kernel, wait until a page asks for it (so what is shown next is
    read when the page opens, not when the kernel was preheated); elsewhere do nothing."""
    if os.environ.get("VOILA_PREHEAT", "False") == "False":
        return
    with contextlib.suppress(ImportError):
        from voila.utils import wait_for_request

        wait_for_request()
