"""Usage records: one per chat request, counted in the metrics and stored in the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from consortium_lab.gateway.calls import CallOutcome, CallRequest
from consortium_lab.gateway.failures import CallFailed
from consortium_lab.gateway.ledger import Ledger, UsageRecord
from consortium_lab.service.metrics import ServiceMetrics

__all__ = ["UsageRecorder"]

logger = logging.getLogger(__name__)


class UsageRecorder:
    """Records each chat request's outcome, tokens, cost and latency."""

    def __init__(self, ledger: Ledger, metrics: ServiceMetrics) -> None:
        self.ledger = ledger
        self.metrics = metrics

    async def record(
        self,
        call: CallRequest,
        received: float,
        outcome: CallOutcome | None,
        failure: CallFailed | None,
        *,
        stream: bool,
        kind: str | None = None,
    ) -> None:
        """Count the call and store its usage record (never its prompt or answer).

        ``kind`` overrides the outcome (``cancelled``, ``stream_restarted``).
        """
        result = kind or ("ok" if outcome is not None else failure.kind if failure else "error")
        self.metrics.chat_requests.labels(
            model=call.model, outcome=result, stream=str(stream).lower()
        ).inc()
        if failure is not None and failure.kind != "quota":
            logger.warning(
                "%s for %s failed (%s): %s", call.model, call.user, failure.kind, failure.message
            )
        record = UsageRecord(
            time=received,
            user=call.user or "anonymous",
            model=call.model,
            outcome=result,
            served_by=outcome.served_by if outcome else failure.served_by if failure else None,
            input_tokens=outcome.usage.input_tokens if outcome else None,
            output_tokens=outcome.usage.output_tokens if outcome else None,
            cost=outcome.cost if outcome else None,
            cached=outcome.cached if outcome else False,
            latency_ms=(
                outcome.latency_ms
                if outcome
                else failure.latency_ms
                if failure
                else (time.time() - received) * 1000
            ),
            stream=stream,
        )
        # The ledger's writer thread stores it with whatever else is queued, in one
        # transaction; this returns once it is stored. A plain answer is sent after that, so
        # every replica sees it; a stream's end goes out first (see ChatCompletions._stream).
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[BaseException | None] = loop.create_future()

        def done(error: BaseException | None) -> None:  # in the writer thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, stored, error)

        try:
            self.ledger.record_later(record, done)
        except Exception:
            logger.exception("could not write a usage record to the ledger")
            return
        try:
            # Longer than SQLite's own wait for another process's lock (30 s): only a writer
            # that stopped working ends here, and the request must not hang on it.
            async with asyncio.timeout(60):
                error = await stored
        except TimeoutError:
            logger.error("the ledger's writer did not store a usage record within 60 s")
            return
        if error is not None:
            logger.error(
                "could not write a usage record to the ledger yet (kept, tried again): %s", error
            )


def _settle(future: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not future.done():
        future.set_result(error)
