"""A background thread that writes an object's queued records in batches.

The ledger (usage records) and the quota manager (counts of users without limits) both queue
writes on the request path and let one daemon thread store whatever has queued up in a single
transaction. The thread holds only a weak reference between batches, so its owner can be
collected, and at interpreter exit the owner's queue is written.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)


class Flushable(Protocol):
    def flush(self) -> None: ...


T = TypeVar("T", bound=Flushable)


def start_flusher(
    owner: T,
    wake: threading.Event,
    *,
    name: str,
    what: str,
    done: Callable[[T], bool],
    on_exit: Callable[[T], None],
    delay: float = 0.0,
) -> threading.Thread:
    """Start the daemon thread that calls ``owner.flush()`` each time ``wake`` is set.

    ``delay`` gathers a batch after the first wake-up; ``done(owner)`` tells the thread to stop
    (the owner's ``close()`` writes what is left); a failed flush is logged as ``what`` and
    tried again half a second later; ``on_exit(owner)`` runs at interpreter exit unless the
    owner is done by then.
    """
    ref = weakref.ref(owner)

    def run() -> None:
        while True:
            if not wake.wait(timeout=5.0):
                if ref() is None:
                    return  # the owner is gone
                continue
            if delay:
                time.sleep(delay)
            wake.clear()
            target = ref()
            if target is None or done(target):
                return
            try:
                # Whatever queued up while the previous batch was written goes in one.
                target.flush()
            except Exception:
                logger.exception("%s not written yet; trying again shortly", what)
                time.sleep(0.5)
                wake.set()
            target = None  # no reference between batches: the owner may be collected

    def at_exit() -> None:
        target = ref()
        if target is not None and not done(target):
            on_exit(target)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    atexit.register(at_exit)
    return thread
