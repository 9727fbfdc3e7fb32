"""Regenerate, retry and edit-and-resend: a turn asked again on a new branch of its conversation.

The turn asked again is never changed or removed: the new run starts a new conversation that
branches from the old one at that turn (:meth:`Conversation.branch`), sharing the turns before
it. Each run of the branch names its parent in the run log (``run_started.branch_of``), so a
reloaded page shows the branch with the shared turns before it, and the old turn stays in the
old conversation (listed in the run log, reopened with ``open_run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from consortium_lab.config.consortium import ConsortiumConfig, check_models
from consortium_lab.engine.conversation import lineage
from consortium_lab.gateway.calls import CacheMode

__all__ = ["CACHE_BY_MODE", "ResendMode", "ResendPlan", "branch_chain", "plan_resend"]

ResendMode = Literal["regenerate", "retry", "edit"]
"""How a turn is asked again: ``regenerate`` (a fresh answer), ``retry`` (after a failure or
an interruption) or ``edit`` (a changed prompt)."""

CACHE_BY_MODE: dict[str, CacheMode] = {"regenerate": "bypass", "retry": "use", "edit": "use"}
"""Regenerate wants a new answer, so it bypasses the response cache; a retry reuses the
answers that did arrive (failures are never cached); an edited prompt has its own cache keys."""


@dataclass(frozen=True)
class ResendPlan:
    """What asking a turn again runs: ``prompt`` with ``config`` as turn ``turn`` of a branch
    of ``conversation_id``."""

    conversation_id: str
    turn: int
    prompt: str
    cache: CacheMode
    config: ConsortiumConfig


def plan_resend(store: Any, run_id: str, mode: str, prompt: str | None = None) -> ResendPlan:
    """The plan for asking run ``run_id``'s turn again (the run's own prompt and settings;
    ``edit`` with ``prompt``). Raises ``KeyError`` for an unknown run and ``ValueError`` for a
    bad mode or prompt."""
    if mode not in CACHE_BY_MODE:
        raise ValueError(f"mode: expected 'regenerate', 'retry' or 'edit' (got {mode!r})")
    if store is None:
        raise KeyError(f"no run log: cannot ask run {run_id!r} again")
    row = store.get_run_row(run_id)
    if row is None:
        raise KeyError(f"no run with id {run_id!r} in the run log")
    if mode == "edit":
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the edited prompt is empty")
    elif prompt is not None:
        raise ValueError(f"{mode} asks the same prompt again: no prompt may be given")
    config = check_models(ConsortiumConfig.model_validate(row["config"]))
    return ResendPlan(
        conversation_id=row["conversation_id"],
        turn=int(row["turn"]),
        prompt=prompt if mode == "edit" and prompt is not None else row["prompt"],
        cache=CACHE_BY_MODE[mode],
        config=config,
    )


def branch_chain(store: Any, conversation_id: str, turn: int) -> list[tuple[str, int | None]]:
    """The conversations (each cut before a turn) whose turns a branch of
    ``conversation_id`` at ``turn`` shares, oldest first."""
    return [*lineage(store, conversation_id)[:-1], (conversation_id, turn)]
