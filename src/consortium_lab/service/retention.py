"""Usage retention: the ledger's usage records older than ``usage_retention_days`` are deleted
at start and every hour, and each purge that deleted anything is written to the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from consortium_lab.service.audit import AuditTrail
from consortium_lab.service.errors import backend_down

__all__ = ["PURGE_EVERY", "RetentionPurger"]

logger = logging.getLogger(__name__)

PURGE_EVERY = 3600.0
"""Seconds between purges while the service runs."""

_DAY = 86_400.0


class RetentionPurger:
    """Deletes usage records older than ``days`` (``None``: keeps everything)."""

    def __init__(self, audit: AuditTrail, days: int | None) -> None:
        self.audit = audit
        self.days = days

    async def purge(self, *, now: float | None = None) -> int:
        """Purge once; how many records were deleted."""
        if self.days is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.days * _DAY
        deleted = await asyncio.to_thread(self.audit.ledger.purge_usage, cutoff)
        if deleted:
            logger.info(
                "retention: deleted %d usage records older than %d days", deleted, self.days
            )
            await self.audit.record(
                "gateway",
                "usage.purge",
                None,
                {"deleted": deleted, "older_than_days": self.days, "before": cutoff},
            )
        return deleted

    async def run(self, every: float = PURGE_EVERY) -> None:
        """Purge now, then every ``every`` seconds, until cancelled; failures are logged."""
        if self.days is None:
            return
        while True:
            try:
                await self.purge()
            except Exception as exc:
                if backend_down(exc):
                    logger.warning("retention: the ledger is unreachable; next try later")
                else:
                    logger.exception("retention: purge failed")
            await asyncio.sleep(every)

    @staticmethod
    async def stop(task: asyncio.Task[None] | None) -> None:
        """Cancel a :meth:`run` task and wait for it."""
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
