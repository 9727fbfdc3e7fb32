"""Multi-turn conversations: each member keeps its own history across follow-ups."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consortium_lab.engine.iteration import MemberKey
from consortium_lab.engine.plugins import resolve_run_log
from consortium_lab.prompts import templates as prompts

if TYPE_CHECKING:
    from consortium_lab.engine.consortium import Consortium
    from consortium_lab.engine.result import RunResult
    from consortium_lab.engine.run import Run

__all__ = ["Conversation"]


class Conversation:
    """A multi-turn conversation: each member keeps its own history across follow-ups (one
    member's answer is never fed to another as its history)."""

    def __init__(self, consortium: Consortium, conversation_id: str | None = None) -> None:
        self.consortium = consortium
        self.id = conversation_id or uuid.uuid4().hex
        self.histories: dict[MemberKey, list[tuple[str, str]]] = {}
        self.turn_count = 0

    def stream(self, prompt: str) -> Run:
        """Ask a follow-up; iterate the returned run for its events."""
        return self.consortium.stream(prompt, conversation=self)

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
        for key, turns in store.conversation_history(conversation_id).items():
            conversation.histories[key] = [
                (prompts.wrap_user_prompt(user), answer) for user, answer in turns
            ]
        conversation.turn_count = len(runs)
        return conversation
