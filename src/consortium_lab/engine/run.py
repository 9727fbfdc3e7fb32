"""A run in progress (:class:`Run`): its events, each folded into the result, recorded in the
run log and handed to the sinks before the consumer sees it: the one way a run is logged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from consortium_lab.engine.events import (
    ArbiterDelta,
    Event,
    MemberDelta,
    RunFailed,
    RunFinished,
    RunStarted,
)
from consortium_lab.engine.iteration import RunContext, RunLoop, cancel_all
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.calls import CacheMode

if TYPE_CHECKING:
    from consortium_lab.engine.consortium import Consortium
    from consortium_lab.engine.conversation import Conversation

__all__ = ["Run", "Sink"]

Sink = Callable[[Event], None]
"""A consumer of the event stream, called with every event (deltas included)."""


class Run:
    """One run in progress: an async iterator of its events, with :meth:`cancel` and
    :attr:`result`. Every event goes to the run log and the sinks before the consumer sees it;
    a run that stops early is closed there too (``cancelled`` when cancelled, ``failed`` with
    the error when the engine raises).

    Use it as ``async for event in run`` (optionally inside ``async with run:`` so leaving the
    block early closes the model calls).
    """

    def __init__(
        self,
        consortium: Consortium,
        prompt: str,
        conversation: Conversation | None,
        *,
        cache: CacheMode = "use",
        user: str | None = None,
        sample: str | None = None,
    ) -> None:
        self.consortium = consortium
        self.run_id = uuid.uuid4().hex
        self.prompt = prompt
        self._ctx = RunContext(run_id=self.run_id, cache=cache, user=user, sample=sample)
        self._tasks = self._ctx.tasks
        loop = RunLoop(consortium.config, consortium.gateway, consortium.extractor)
        self._gen = loop.events(prompt, conversation, self._ctx)
        self._result: RunResult | None = None
        self._iterating = False
        self._finished = False
        self._store = consortium.store
        self._sinks = consortium.sinks

    @property
    def result(self) -> RunResult:
        """The result so far (complete once the iterator is exhausted)."""
        if self._result is None:
            raise RuntimeError("the run has not started yet: iterate it or await consortium.run()")
        return self._result

    def __aiter__(self) -> Run:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        event: Event | None = None
        if not self._ctx.cancelled:
            self._iterating = True
            try:
                event = await self._gen.__anext__()
            except StopAsyncIteration:
                event = None
            except asyncio.CancelledError:
                # The consumer's own task was cancelled: close the calls, log the cancellation.
                self._iterating = False
                await self._close_calls()
                if self._result is not None and self._result.status == "running":
                    await self._emit(self._cancelled_event())
                self._finished = True
                raise
            except Exception as error:
                # A bug, not a model failure (those are events): the run is closed as failed
                # in the log and the sinks, then the error reaches the consumer.
                self._iterating = False
                await self._close_calls()
                if self._result is not None and self._result.status == "running":
                    reason = f"{type(error).__name__}: {error}"
                    await self._emit(RunFailed(run_id=self.run_id, reason=reason))
                self._finished = True
                raise
            finally:
                self._iterating = False
        if self._ctx.cancelled:
            # cancel() was called (maybe from another task while we waited): whatever the
            # generator produced after that is dropped, the run ends as cancelled.
            await self._close_calls()
            self._finished = True
            return await self._emit(self._cancelled_event())
        if event is None:
            self._finished = True
            raise StopAsyncIteration
        if isinstance(event, (RunFinished, RunFailed)):
            self._finished = True
        return await self._emit(event)

    def _cancelled_event(self) -> RunFinished:
        iterations = len(self._result.iterations) if self._result else 0
        return RunFinished(run_id=self.run_id, iterations=iterations, status="cancelled")

    async def _emit(self, event: Event) -> Event:
        """Fold the event into the result, log it, and hand it to the sinks."""
        if isinstance(event, RunStarted):
            self._result = RunResult.from_events([event])
        elif self._result is not None:
            self._result.apply(event)
        if self._store is not None and not isinstance(event, (MemberDelta, ArbiterDelta)):
            # A write may wait for another process's lock: never on the event loop.
            await asyncio.to_thread(self._store.record, event)
        for sink in self._sinks:
            sink(event)
        return event

    async def _close_calls(self) -> None:
        await cancel_all(list(self._tasks))
        if not self._iterating:
            # Only the iterating task may close the generator; it does so on its next step.
            await self._gen.aclose()

    async def cancel(self) -> None:
        """Stop the run, from any task: close every in-flight model call; the next event is
        ``run_finished`` with status ``cancelled`` (what completed is kept)."""
        if self._finished:
            return
        self._ctx.cancelled = True
        await self._close_calls()

    async def aclose(self) -> None:
        """Close in-flight calls if the run was left before its end."""
        if not self._finished:
            await self.cancel()
            if self._result is not None:
                await self.__anext__()

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
