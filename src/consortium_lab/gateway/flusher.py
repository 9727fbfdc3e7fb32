"""A background thread that writes an object's queued records in batches.

The ledger (usage records) and the quota manager (counts of users without limits) both queue
writes on the request path and let one daemon thread store whatever has queued up in a single
transaction. The thread holds only a weak reference between batches, so its owner can be
collected, and at interpreter exit the owner's queue is written.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)


class Flushable(Protocol):
    def flush(self) -> None: ...


T = TypeVar("T", bound=Flushable)


class Flusher(Generic[T]):
    """The writer thread of one owner: started on first :meth:`wake`, stopped by :meth:`close`.

    Args:
        owner: what ``flush()`` is called on (held weakly).
        lock: the owner's queue lock. :attr:`closed` changes only under it, so an owner that
            checks :attr:`closed` and queues under the same lock never queues after the final
            write of :meth:`close`.
        name: the thread's name.
        what: what is written, for log messages (``"usage records"``).
        lost: describes what is still queued, logged when the final write fails.
        delay: seconds to gather a batch after the first wake-up.
    """

    def __init__(
        self,
        owner: T,
        *,
        lock: threading.Lock,
        name: str,
        what: str,
        lost: Callable[[T], object],
        delay: float = 0.0,
    ) -> None:
        self._ref = weakref.ref(owner)
        self._lock = lock
        self._name = name
        self._what = what
        self._lost = lost
        self._delay = delay
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed = False
        """True once :meth:`close` has begun: the owner writes anything queued later itself."""

    def wake(self) -> bool:
        """Have the thread write the owner's queue soon, starting it on first use.

        Returns False when the flusher is closed: the caller then writes its queue itself.
        """
        if self._thread is None:
            with self._lock:
                if self.closed:
                    return False
                if self._thread is None:
                    self._thread = self._start()
        if self.closed:
            return False
        if not self._wake.is_set():
            self._wake.set()
        return True

    def close(self) -> None:
        """Stop the thread (a batch in progress finishes), then write what is left.

        Raises what the final write raised, after logging what could not be written.
        """
        with self._lock:
            self.closed = True
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._wake.set()
            thread.join()
        owner = self._ref()
        if owner is None:
            return
        try:
            owner.flush()
        except Exception:
            logger.exception("%s could not be written: %s", self._what, self._lost(owner))
            raise

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        thread.start()
        atexit.register(self._at_exit)
        return thread

    def _run(self) -> None:
        while True:
            if not self._wake.wait(timeout=5.0):
                if self._ref() is None:
                    return  # the owner is gone
                continue
            if self._delay:
                time.sleep(self._delay)
            self._wake.clear()
            target = self._ref()
            if target is None or self.closed:
                return
            try:
                # Whatever queued up while the previous batch was written goes in one.
                target.flush()
            except Exception:
                logger.exception("%s not written yet; trying again shortly", self._what)
                time.sleep(0.5)
                self._wake.set()
            target = None  # no reference between batches: the owner may be collected

    def _at_exit(self) -> None:
        if not self.closed and self._ref() is not None:
            # Already logged in full by close(); nothing can be done about it at exit.
            with contextlib.suppress(Exception):
                self.close()
