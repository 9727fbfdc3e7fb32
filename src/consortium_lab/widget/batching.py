"""Coalescing of the engine's events into rate-limited ``events`` messages.

``member_delta`` / ``arbiter_delta`` text is buffered per (kind, model, instance, iteration,
stage, channel) and flushed at most :data:`MAX_MESSAGES_PER_SECOND` times a second as ONE
custom message carrying the merged deltas and every other event, in stream order. Nothing is
dropped; on ``member_done`` the front end replaces the streamed text with the full text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from consortium_lab.engine.events import ArbiterDelta, Event, MemberDelta
from consortium_lab.widget.messages import Snapshot, SnapshotStream

__all__ = ["MAX_MESSAGES_PER_SECOND", "DeltaBatcher", "event_payload", "snapshot", "stream_key"]

MAX_MESSAGES_PER_SECOND = 20
"""The most ``events`` messages a widget sends per second while a run streams."""

DELTA_KINDS = ("member_delta", "arbiter_delta")


def stream_key(event: dict[str, Any]) -> tuple[Any, ...]:
    """The stream a delta payload belongs to: (kind, model, instance, iteration, stage,
    channel); the front end's ``streamKey`` keys its streams the same way."""
    return (
        event["kind"],
        event["model"],
        event.get("instance"),
        event["iteration"],
        event.get("stage"),
        event.get("channel", "text"),
    )


_DROP = {"schema_version"}


def event_payload(event: Event) -> dict[str, Any]:
    """An event as the front end receives it (JSON-ready; deltas without their time)."""
    data = event.model_dump(mode="json", exclude=_DROP)
    if isinstance(event, (MemberDelta, ArbiterDelta)):
        data.pop("at", None)
    return data


class DeltaBatcher:
    """Collects event payloads and hands them to ``flush_to`` as one list at most
    ``rate`` times a second. Consecutive and non-consecutive deltas of the same stream key
    pending in one batch are merged into the first one (a stream's deltas always precede its
    ``member_done``, whose key differs only by kind, so order is kept)."""

    def __init__(
        self,
        flush_to: Callable[[list[dict[str, Any]]], None],
        *,
        rate: float = MAX_MESSAGES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush_to = flush_to
        self.interval = 1.0 / rate
        self._clock = clock
        self._items: list[dict[str, Any]] = []
        self._open: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._last = -1e9
        self._handle: asyncio.Handle | None = None
        self.flushes = 0

    @property
    def pending(self) -> bool:
        return bool(self._items)

    def add(self, item: dict[str, Any]) -> None:
        if item["kind"] in DELTA_KINDS:
            key = stream_key(item)
            existing = self._open.get(key)
            if existing is not None:
                existing["text"] += item["text"]
                return
            item = dict(item)
            self._open[key] = item
        self._items.append(item)
        self._schedule()

    def _schedule(self) -> None:
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (plain synchronous use): flush now
            self.flush()
            return
        delay = max(0.0, self._last + self.interval - self._clock())
        self._handle = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Send what is pending now (also cancels a scheduled flush)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._items:
            return
        items, self._items, self._open = self._items, [], {}
        self.flushes += 1
        try:
            self._flush_to(items)
        finally:
            # Measured after sending, so slow work inside a flush never shortens the gap.
            self._last = self._clock()

    async def drain(self) -> None:
        """Wait for the rate limit, then send what is pending."""
        if not self._items:
            return
        wait = self._last + self.interval - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self.flush()


def snapshot(run_id: str | None, streams: dict[tuple[Any, ...], str]) -> Snapshot:
    """The live run's streams so far (keyed as :func:`stream_key`), for a view that says
    ``ready`` mid-run."""
    return Snapshot(
        run_id=run_id,
        streams=[
            SnapshotStream(
                kind=k[0],
                model=k[1],
                instance=k[2],
                iteration=k[3],
                stage=k[4],
                channel=k[5],
                text=text,
            )
            for k, text in streams.items()
        ],
    )
