"""The conditions an evaluation compares, each a consortium config run on every item.

``--modes`` names them (:func:`build_conditions`):

``members``
    Each member alone, one call per item: one condition ``member:<model id>`` per model, run
    in ``compare`` mode with that model only.
``consortium`` / ``council``
    Every member and the arbiter in that mode; the synthesis is what is scored.
``vote``
    Every member answers and the most frequent answer wins (``mode="vote"``); the winning
    answer is scored.
any other name
    A saved config (``consortium-lab configs list``), run as saved.

What is scored is what the user would read: :func:`answer_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from consortium_lab.config.consortium import ConsortiumConfig

if TYPE_CHECKING:
    from consortium_lab.engine.result import RunResult

__all__ = [
    "BUILT_IN_MODES",
    "Condition",
    "answer_of",
    "build_conditions",
    "check_condition",
    "run_usage",
]

BUILT_IN_MODES = ("members", "vote", "consortium", "council")


@dataclass(frozen=True)
class Condition:
    """A named consortium config; ``settings`` are :class:`ConsortiumConfig` fields."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)


def _models(models: Sequence[str]) -> list[str]:
    if not models:
        raise ValueError("give at least one member model (-m MODEL)")
    seen: list[str] = []
    for model in models:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"member model: expected a model id, got {model!r}")
        if model not in seen:
            seen.append(model)
    return seen


def build_conditions(
    modes: Iterable[str],
    models: Sequence[str] = (),
    arbiter: str | None = None,
    **settings: Any,
) -> list[Condition]:
    """The conditions for ``modes`` (built-in names or saved config names), in that order.

    ``models`` are the members (``model:N`` for N instances), ``arbiter`` the arbiter
    (default: the first member); ``settings`` are further config fields for the built-in
    multi-model modes (``max_iterations``, ``confidence_threshold``...). Unknown names raise
    ``KeyError`` naming the saved configs; an empty list raises ``ValueError``.
    """
    from consortium_lab import configs

    conditions: list[Condition] = []
    for raw in modes:
        mode = raw.strip()
        if not mode:
            continue
        if mode == "members":
            for spec in _models(models):
                model = spec.rsplit(":", 1)[0] if spec.rsplit(":", 1)[-1].isdigit() else spec
                conditions.append(
                    Condition(f"member:{model}", {"models": [model], "mode": "compare"})
                )
        elif mode in ("vote", "consortium", "council"):
            config: dict[str, Any] = {**settings, "models": _models(models), "mode": mode}
            if arbiter and mode != "vote":
                config["arbiter"] = arbiter
            conditions.append(Condition(mode, config))
        else:
            saved = configs.get(mode)  # KeyError names the saved configs
            conditions.append(Condition(mode, saved.to_dict()))
    names = [c.name for c in conditions]
    if not conditions:
        raise ValueError(f"no conditions: give --modes from {', '.join(BUILT_IN_MODES)}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"condition(s) named twice: {', '.join(duplicates)}")
    return conditions


def check_condition(condition: Condition) -> ConsortiumConfig:
    """The condition's config, validated (a bad setting raises ``ValueError`` naming it)."""
    from consortium_lab.config.consortium import STORED, parse_models

    settings = dict(condition.settings)
    if "models" in settings and isinstance(settings["models"], list):
        settings["models"] = parse_models(settings["models"])
    return ConsortiumConfig.model_validate(settings, context=STORED)


def answer_of(result: RunResult) -> str:
    """What the user reads: the synthesis (consortium, council), the winning answer (vote),
    the member's answer (members alone)."""
    return result.text


def run_usage(result: RunResult) -> tuple[int, float | None]:
    """Tokens (input plus output) and cost of every call of ``result`` (cost None when no
    call had a price)."""
    tokens = 0
    costs: list[float] = []
    for iteration in result.iterations:
        calls: list[Any] = list(iteration.members)
        if iteration.synthesis is not None:
            calls.append(iteration.synthesis)
        for call in calls:
            tokens += (call.usage.input_tokens or 0) + (call.usage.output_tokens or 0)
            if call.cost is not None:
                costs.append(call.cost)
    return tokens, (sum(costs) if costs else None)
