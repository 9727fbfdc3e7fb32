"""Multi-turn conversations: each member keeps its own history across follow-ups.

A conversation may branch from another at a turn (an edited prompt, a regenerated or retried
answer): the branch shares the parent's turns before that one, and the parent is kept whole.
Each run of a branch records the parent in its ``run_started`` event (``branch_of``), so the run
log alone says which turns a branch shows (:func:`lineage`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consortium_lab.engine.events import RunStarted
from consortium_lab.engine.hookspecs import RunLog
from consortium_lab.engine.iteration import MemberKey
from consortium_lab.engine.plugins import resolve_run_log
from consortium_lab.prompts import templates as prompts

if TYPE_CHECKING:
    from consortium_lab.engine.consortium import Consortium
    from consortium_lab.engine.result import RunResult
    from consortium_lab.engine.run import Run
    from consortium_lab.gateway.calls import CacheMode

__all__ = ["Conversation", "lineage"]

MAX_BRANCH_DEPTH = 1000
"""Branches of branches followed at most (a guard against a corrupted log that loops)."""


def _parent(store: RunLog, conversation_id: str) -> tuple[str, int] | None:
    """The conversation ``conversation_id`` branches from and the turn it branches at."""
    runs = store.list_runs(conversation_id=conversation_id)
    if not runs:
        return None
    first = runs[-1]
    events = store.get_events(first["id"])
    started = events[0] if events and isinstance(events[0], RunStarted) else None
    if started is None or not started.branch_of:
        return None
    return started.branch_of, int(first["turn"])


def lineage(store: RunLog, conversation_id: str) -> list[tuple[str, int | None]]:
    """The conversations whose turns ``conversation_id`` shows, oldest first: each with the
    turn it is cut before (``None``: all of its turns, for ``conversation_id`` itself)."""
    chain: list[tuple[str, int | None]] = [(conversation_id, None)]
    seen = {conversation_id}
    current = conversation_id
    while len(chain) < MAX_BRANCH_DEPTH:
        parent = _parent(store, current)
        if parent is None or parent[0] in seen:
            break
        current, turn = parent
        seen.add(current)
        chain.append((current, turn))  # the parent shows its turns before the branch point
    chain.reverse()
    return chain


class Conversation:
    """A multi-turn conversation: each member keeps its own history across follow-ups (one
    member's answer is never fed to another as its history)."""

    def __init__(self, consortium: Consortium, conversation_id: str | None = None) -> None:
        self.consortium = consortium
        self.id = conversation_id or uuid.uuid4().hex
        self.histories: dict[MemberKey, list[tuple[str, str]]] = {}
        self.turn_count = 0
        self.parent_id: str | None = None

    def stream(self, prompt: str, *, cache: CacheMode = "use") -> Run:
        """Ask a follow-up; iterate the returned run for its events (``cache`` as in
        :meth:`Consortium.stream`)."""
        return self.consortium.stream(prompt, conversation=self, cache=cache)

    async def ask(self, prompt: str) -> RunResult:
        """Ask a follow-up and return its result."""
        return await self.consortium.run(prompt, conversation=self)

    def record_turn(self, user_text: str, answers: Mapping[MemberKey, str]) -> None:
        """A completed turn: each member's final answer joins its own history."""
        for key, text in answers.items():
            self.histories.setdefault(key, []).append((user_text, text))

    @classmethod
    def from_log(
        cls, conversation_id: str, consortium: Consortium | None = None, *, store: Any = None
    ) -> Conversation:
        """Rebuild a conversation (each member's own history) from the run log; its last
        run's config is used when no consortium is given."""
        from consortium_lab.engine.consortium import Consortium

        log = resolve_run_log(store)
        if log is None:
            raise ValueError("a conversation is rebuilt from a run log: store=False has none")
        store = log
        runs = store.list_runs(conversation_id=conversation_id)
        if not runs:
            raise KeyError(f"no conversation {conversation_id!r} in the run log {store.path}")
        if consortium is None:
            latest = runs[0]
            config = (
                latest["config"]
                if isinstance(latest["config"], dict)
                else json.loads(latest["config"])
            )
            consortium = Consortium(config, store=store)
        conversation = cls(consortium, conversation_id)
        conversation._load_history(store, conversation_id, None)
        parent = _parent(store, conversation_id)
        conversation.parent_id = parent[0] if parent else None
        conversation.turn_count = max(int(r["turn"]) for r in runs)
        return conversation

    @classmethod
    def branch(
        cls, conversation_id: str, turn: int, consortium: Consortium, *, store: Any = None
    ) -> Conversation:
        """A new conversation sharing the turns of ``conversation_id`` before ``turn`` (its
        next run is that turn again); ``conversation_id`` itself is left as it is."""
        log = resolve_run_log(store)
        if log is None:
            raise ValueError("a conversation branches from a run log: store=False has none")
        if not log.list_runs(conversation_id=conversation_id, limit=1):
            raise KeyError(f"no conversation {conversation_id!r} in the run log {log.path}")
        if turn < 1:
            raise ValueError(f"turn: expected 1 or more (got {turn})")
        conversation = cls(consortium)
        conversation._load_history(log, conversation_id, turn)
        conversation.parent_id = conversation_id
        conversation.turn_count = turn - 1
        return conversation

    def _load_history(self, store: RunLog, conversation_id: str, before_turn: int | None) -> None:
        chain = lineage(store, conversation_id)
        if before_turn is not None:
            chain[-1] = (conversation_id, before_turn)
        for cid, cut in chain:
            for key, turns in store.conversation_history(cid, before_turn=cut).items():
                self.histories.setdefault(key, []).extend(
                    (prompts.wrap_user_prompt(user), answer) for user, answer in turns
                )
