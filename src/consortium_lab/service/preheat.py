"""Readying the service's process before it listens: the first request's imports, then the
start-up heap set aside from the garbage collector.

After start-up the process holds some 200 000 objects (``llm``, its plugins, the openai SDK,
pydantic, aiohttp) that live as long as it does. CPython's full (generation 2) collection walks
every one of them; in the service it ran every few hundred streams and took 120–370 ms of CPU,
stalling every open stream meanwhile (the service's p99 at one stream). ``gc.freeze()`` moves
them to a permanent generation that collections skip, so a full collection only walks what
requests made since.
"""

from __future__ import annotations

import gc
import importlib

__all__ = ["FIRST_REQUEST_IMPORTS", "preheat"]

FIRST_REQUEST_IMPORTS: tuple[str, ...] = (
    "tenacity",  # the gateway's retries (and the tornado it pulls in)
    "tenacity.asyncio",
    "orjson",  # the lean transport
    "aiohttp",
)
"""Modules the first chat request would otherwise import on its own path."""


def preheat(modules: tuple[str, ...] = FIRST_REQUEST_IMPORTS) -> int:
    """Import ``modules`` (those not installed are skipped), collect once, then freeze the heap.

    Call once, after the process is set up and before it takes requests (the service before it
    listens; a chat kernel in ``warm_up()``). Objects made later are collected as usual.
    Returns how many objects were frozen.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional extra not installed: its path never runs
            continue
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
