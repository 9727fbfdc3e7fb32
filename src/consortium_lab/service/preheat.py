"""Readying a process before it takes work: importing what its first request would import on
its own path, then setting the start-up heap aside from the garbage collector.

One code path for every process that readies itself: the gateway service before it listens,
a chat kernel in ``warm_up()`` and a dashboard kernel in ``warm_up_dashboard()`` (both in
:mod:`consortium_lab.apps.preheat`).

After start-up the service holds some 200 000 objects (``llm``, its plugins, the openai SDK,
pydantic, aiohttp) that live as long as it does. CPython's full (generation 2) collection walks
every one of them; in the service it ran every few hundred streams and took 120–370 ms of CPU,
stalling every open stream meanwhile (the service's p99 at one stream). ``gc.freeze()`` moves
them to a permanent generation that collections skip, so a full collection only walks what
requests made since.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterable

__all__ = ["FIRST_REQUEST_IMPORTS", "preheat"]

FIRST_REQUEST_IMPORTS: tuple[str, ...] = (
    "tenacity",  # the gateway's retries (and the tornado it pulls in)
    "tenacity.asyncio",
    "orjson",  # the lean transport
    "aiohttp",
)
"""Modules the first chat request would otherwise import on its own path."""


def _is_missing(error: ModuleNotFoundError, name: str) -> bool:
    """Whether ``error`` says that ``name`` itself (or a package above it) is not installed,
    rather than that an installed module failed on an import of its own."""
    parts = name.split(".")
    return error.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def preheat(
    modules: Iterable[str] = FIRST_REQUEST_IMPORTS,
    *,
    freeze: bool = True,
    missing_ok: bool = True,
) -> int:
    """Import ``modules``, then (with ``freeze``) collect once and freeze the heap.

    Call once, after the process is set up and before it takes work. Objects made later are
    collected as usual.

    Args:
        modules: dotted module names, imported in order.
        freeze: collect, then move every object alive to the collector's permanent generation
            (``gc.freeze()``), so full collections during requests skip the start-up heap.
            Worth it where a collection would stall open streams (the service, a chat kernel).
        missing_ok: skip a module that is not installed (an optional extra whose path never
            runs). Without it, a missing module raises :class:`ModuleNotFoundError`. Either
            way an installed module that fails on an import of its own raises: that is a
            broken install, not an absent extra.

    Returns:
        How many objects the collector holds frozen (``gc.get_freeze_count()``).
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if not (missing_ok and _is_missing(error, name)):
                raise
    if freeze:
        gc.collect()
        gc.freeze()
    return gc.get_freeze_count()
