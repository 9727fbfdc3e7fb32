"""The events of concurrent model calls, brought to the one task that yields them
(:class:`FanIn`), with the streamed pieces of a call that wait together sent as one delta.

Under many concurrent runs the consumer of a run's events falls behind its members' streams:
measured at 50 runs, the consumer found five or more events waiting at half of its reads. Each
piece as its own event cost a pydantic model, a queue hand-off and the run's whole event path
(result, sinks, the consumer); pieces of one call that are waiting together are now joined
into one delta when the consumer takes them. The text, its order within each call and the
order of each call's deltas against its other events are unchanged; a slow consumer sees
fewer, longer deltas.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["FanIn"]

E = TypeVar("E")


class _Pieces(Generic[E]):
    """Text pieces of one call and channel, waiting to become one delta."""

    __slots__ = ("chunks", "make")

    def __init__(self, make: Callable[..., E], chunk: str) -> None:
        self.make = make
        self.chunks = [chunk]


class FanIn(Generic[E]):
    """A single-consumer queue of events (and ``None`` markers) from concurrent calls.

    :meth:`put` queues an event as is (``None`` marks the end of a call); :meth:`text` queues
    a piece of streamed text, joined with the pieces of the same ``key`` queued since the last
    event; :meth:`take` waits for and returns everything queued, in order, the joined pieces
    built into events; :meth:`events` yields them until every call has ended.
    """

    def __init__(self) -> None:
        self._items: deque[E | _Pieces[E] | None] = deque()
        self._open: dict[Hashable, _Pieces[E]] = {}
        self._waiter: asyncio.Future[None] | None = None

    def put(self, event: E | None) -> None:
        """Queue ``event``; pieces queued after it start a new delta."""
        # Conservative: any event closes every open delta, so no call's text is ever moved
        # past an event of its own.
        self._open.clear()
        self._items.append(event)
        self._wake()

    def text(self, key: Hashable, chunk: str, make: Callable[..., E]) -> None:
        """Queue a piece of text of ``key`` (a call and channel); ``make(text=...)`` builds the
        delta of the pieces joined."""
        pieces = self._open.get(key)
        if pieces is not None:
            pieces.chunks.append(chunk)
            return
        pieces = self._open[key] = _Pieces(make, chunk)
        self._items.append(pieces)
        self._wake()

    async def take(self) -> list[E | None]:
        """Everything queued, waiting for something if nothing is."""
        if not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, deque()
        self._open.clear()
        return [
            item.make(text="".join(item.chunks)) if isinstance(item, _Pieces) else item
            for item in items
        ]

    async def events(self, calls: int) -> AsyncIterator[E]:
        """The events queued, as they come, until ``calls`` calls have each put their
        ``None`` (the end of a call)."""
        while calls:
            for item in await self.take():
                if item is None:
                    calls -= 1
                else:
                    yield item

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
