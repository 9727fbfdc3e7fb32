"""Batched, background writes to ``llm``'s log database.

Logging one response costs a fresh connection, a ``BEGIN IMMEDIATE`` and ~5 ms of CPU; under 50
concurrent runs that was ~30 % of a process. The gateway instead queues each finished response
and one writer thread (a :class:`~consortium_lab.gateway.flusher.Flusher`) writes whatever has
queued during its batch window in a single transaction, off the event loop.

Nothing queued is lost on an orderly end: the queue is written at interpreter exit (which is how
a kernel shuts down), on :meth:`LlmLogWriter.close`, and on ``SIGTERM`` when the process has no
handler of its own for it (the default would end it without running ``atexit``). A ``SIGKILL``
or a crash loses at most the responses of the last batch window (:data:`BATCH_WINDOW_S`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from pathlib import Path
from typing import Any

from consortium_lab.gateway.flusher import Flusher
from consortium_lab.gateway.llm_logs import llm_logging_on, log_to_llm

__all__ = ["BATCH_WINDOW_S", "LlmLogWriter", "default_writer"]

BATCH_WINDOW_S = 0.05
"""Seconds a batch gathers responses after the first one is queued."""

_writers: weakref.WeakSet[LlmLogWriter] = weakref.WeakSet()
_sigterm_lock = threading.Lock()
_sigterm_installed = False


class LlmLogWriter:
    """Queues finished ``llm`` responses and writes them in batches from one thread.

    Args:
        path: the log database (default: llm's own, honouring ``llm logs off``).
        window: seconds to gather a batch after the first response is queued.
    """

    def __init__(self, path: str | Path | None = None, *, window: float = BATCH_WINDOW_S) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        # Held while a batch is written: a flush() returns only once what was queued before it
        # is in the file, including a batch the writer thread had already taken.
        self._writing = threading.Lock()
        self._queue: list[Any] = []
        self._flusher: Flusher[LlmLogWriter] = Flusher(
            self,
            lock=self._lock,
            name="llm-log-writer",
            what="llm log entries",
            lost=lambda writer: f"{len(writer._queue)} response(s)",
            delay=window,
        )
        _writers.add(self)
        _install_sigterm_flush()

    def submit(self, response: Any) -> str | None:
        """Queue a finished response; returns the id it will have in the log (None when
        ``llm logs off`` is in effect)."""
        if self.path is None and not llm_logging_on():
            return None
        with self._lock:
            self._queue.append(response)
        if not self._flusher.wake():
            self.flush()  # closed: nobody else will write it
        return str(response.id)

    @property
    def pending(self) -> int:
        """Responses queued and not written yet."""
        with self._lock:
            return len(self._queue)

    def flush(self) -> None:
        """Write everything queued now, in one transaction (failures are logged by
        :func:`~consortium_lab.gateway.llm_logs.log_to_llm`)."""
        with self._writing:
            with self._lock:
                batch, self._queue = self._queue, []
            if batch:
                log_to_llm(batch, path=self.path)

    def close(self) -> None:
        """Stop the writer thread and write what is left."""
        self._flusher.close()


SIGTERM_FLUSH_TIMEOUT_S = 25.0
"""How long a ``SIGTERM`` waits for the queues to be written before the process ends."""

_default: LlmLogWriter | None = None
_default_lock = threading.Lock()


def default_writer() -> LlmLogWriter:
    """The process's writer for llm's own log database (shared by every gateway)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LlmLogWriter()
        return _default


def flush_all() -> None:
    """Write every writer's queue now."""
    for writer in list(_writers):
        with contextlib.suppress(Exception):
            writer.flush()


def _install_sigterm_flush() -> None:
    """On ``SIGTERM``, write the queues, then end as ``SIGTERM`` would have.

    Only where the process has no handler of its own (a server that handles ``SIGTERM`` exits
    through ``atexit``, which writes the queues) and only from the main thread (the only one
    that may set signal handlers).
    """
    global _sigterm_installed
    with _sigterm_lock:
        if _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        _sigterm_installed = True
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: object) -> None:
    # The interrupted thread may hold a writer's lock: write from another thread, bounded. The
    # bound fits inside the usual 30 s grace between SIGTERM and SIGKILL (Kubernetes, systemd)
    # while leaving a first write, which runs all of llm's log migrations, time on a loaded
    # machine (10 s was seen to cut one short).
    writer = threading.Thread(target=flush_all, name="llm-log-sigterm", daemon=True)
    writer.start()
    writer.join(SIGTERM_FLUSH_TIMEOUT_S)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
