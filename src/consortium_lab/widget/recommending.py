"""The chat's "for prompts like this" hint: members suggested from the run log, off the loop.

The page asks (``recommend {prompt}``) a while after the draft prompt last changed. Reading
the run log, building the TF-IDF index (which imports scikit-learn, on the first request
only) and the lookup run in a worker thread, one at a time: a request that comes while one is
being answered waits, and only the latest waiting one is answered (the page ignores stale
answers anyway). The index is rebuilt only when the number of finished runs changed, so a
draft being typed costs one small query per request. Nothing here runs on the send path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from consortium_lab.recommender.advice import read_history
from consortium_lab.recommender.topics import DEFAULT_MIN_RUNS, PromptIndex, Suggestion
from consortium_lab.widget.messages import RecommendReply, RecommendRequest

if TYPE_CHECKING:
    from consortium_lab.widget.chat import ChatWidget

__all__ = ["PromptHints"]

logger = logging.getLogger(__name__)


class PromptHints:
    """Answers a chat widget's ``recommend`` requests (see the module docstring)."""

    def __init__(self, widget: ChatWidget, *, min_runs: int = DEFAULT_MIN_RUNS) -> None:
        self.widget = widget
        self.min_runs = min_runs
        self._index: PromptIndex | None = None
        self._indexed: tuple[int, str | None] | None = None
        self._busy = False
        self._waiting: RecommendRequest | None = None
        self._task: asyncio.Task[None] | None = None

    def request(self, message: RecommendRequest) -> None:
        """Answer ``message`` soon (on the running loop; the work runs in a thread)."""
        self._waiting = message
        if not self._busy:
            self._busy = True
            # Kept: the loop holds tasks only weakly.
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting is not None:
                message, self._waiting = self._waiting, None
                available = {str(m.get("id")) for m in self.widget.models}
                try:
                    hint = await asyncio.to_thread(self._suggest, message.prompt, available)
                except Exception as exc:
                    logger.debug("recommendation failed", exc_info=True)
                    reply = RecommendReply(req=message.req, message="", error=str(exc) or repr(exc))
                else:
                    reply = self._reply(message, hint)
                self.widget._post(reply)
        finally:
            self._busy = False

    @staticmethod
    def _reply(message: RecommendRequest, hint: Suggestion | str) -> RecommendReply:
        if isinstance(hint, str):
            return RecommendReply(req=message.req, message=hint)
        return RecommendReply(
            req=message.req,
            message=hint.message,
            members=hint.members,
            support=hint.support,
            min_runs=hint.min_runs,
            enough_history=hint.enough_history,
        )

    def _suggest(self, prompt: str, available: set[str]) -> Suggestion | str:
        """In the worker thread: the suggestion, or why there is none."""
        store: Any = self.widget.store
        if store is None:
            return "No run log: suggestions come from logged runs."
        if not prompt.strip():
            return ""
        mark = store.finished_runs_mark()
        if self._index is None or mark != self._indexed:
            # Its own connection: the long read never holds the lock a run's writes wait on.
            self._index = PromptIndex(read_history(store.path))
            self._indexed = mark
        return self._index.suggest(prompt, min_runs=self.min_runs, available=available)
