"""Choosing among evaluated conditions: the cheapest one close enough to the best, and the
Pareto fronts of accuracy against cost and against latency.

A *condition* is one row of an evaluation's ``conditions`` (``consortium-lab eval --json``):
``name``, ``accuracy`` and, where measured, ``cost``, ``latency_mean``, ``latency_p95``, ``n``,
``correct``, ``ci_low``, ``ci_high``, ``tokens`` and ``failures``. Any mapping or object with
those keys or attributes works (the evaluation package's result model, a dict read from JSON,
a DataFrame's rows), so this module does not depend on how an evaluation is stored.

Definitions
-----------
Best
    The condition with the highest accuracy (ties: the cheaper, then the faster, then the
    first given).
Within the margin
    ``accuracy >= best.accuracy - margin``; ``margin`` is in accuracy units (0.02 is two
    percentage points).
Choice
    Among the conditions within the margin that have a cost, the cheapest (ties: the more
    accurate, then the faster, then the first given). When none of them has a cost, the best.
Pareto front (accuracy against cost, or against latency)
    The conditions with that measure for which no other condition is at least as accurate and
    at most as costly (or slow), and strictly better in one of the two; sorted by the measure,
    cheapest (fastest) first. Conditions without the measure take no part and are listed in
    ``unpriced`` (or ``untimed``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError

__all__ = ["Condition", "EvaluationAdvice", "advise", "conditions_from", "pareto_front"]

_FIELDS = (
    "name",
    "accuracy",
    "cost",
    "latency_mean",
    "latency_p95",
    "n",
    "correct",
    "ci_low",
    "ci_high",
    "tokens",
    "failures",
)


class Condition(BaseModel):
    """One evaluated condition, with the numbers a recommendation is made from."""

    name: str = Field(min_length=1, description="e.g. 'member:gpt-4o-mini', 'vote', 'consortium'.")
    accuracy: float = Field(ge=0, le=1, description="Share of items scored correct.")
    cost: float | None = Field(None, ge=0, description="Total cost of the condition's calls.")
    latency_mean: float | None = Field(None, ge=0, description="Mean seconds per item.")
    latency_p95: float | None = Field(None, ge=0, description="95th percentile seconds per item.")
    n: int | None = Field(None, ge=0, description="Items scored.")
    correct: int | None = Field(None, ge=0, description="Items scored correct.")
    ci_low: float | None = Field(None, description="Lower end of the 95% interval of accuracy.")
    ci_high: float | None = Field(None, description="Upper end of the 95% interval of accuracy.")
    tokens: int | None = Field(None, ge=0, description="Tokens used, input and output.")
    failures: int | None = Field(None, ge=0, description="Answers whose run failed.")


class EvaluationAdvice(BaseModel):
    """What an evaluation recommends, with the numbers behind it."""

    margin: float = Field(description="The accuracy margin allowed below the best.")
    best: Condition = Field(description="The most accurate condition.")
    accuracy_floor: float = Field(description="best.accuracy - margin: the least accepted.")
    choice: Condition = Field(description="The cheapest condition within the margin.")
    within_margin: list[str] = Field(description="Every condition within the margin, by name.")
    cost_saved: float | None = Field(
        None, description="best.cost - choice.cost, when both are priced."
    )
    pareto_cost: list[Condition] = Field(description="Accuracy against cost: the front.")
    pareto_latency: list[Condition] = Field(description="Accuracy against mean latency: the front.")
    unpriced: list[str] = Field(description="Conditions without a cost (left out of cost).")
    untimed: list[str] = Field(description="Conditions without a latency (left out of latency).")
    summary: str = Field(description="One sentence for a person.")


def _read(item: Any, index: int) -> Condition:
    if isinstance(item, Condition):
        return item
    if isinstance(item, Mapping):
        data = {k: item[k] for k in _FIELDS if k in item}
    else:
        data = {k: getattr(item, k) for k in _FIELDS if hasattr(item, k)}
    # A frame's missing value is NaN: the same as an absent field.
    data = {k: v for k, v in data.items() if not (isinstance(v, float) and math.isnan(v))}
    label = data.get("name") or f"condition {index + 1}"
    if "name" not in data or "accuracy" not in data:
        missing = [k for k in ("name", "accuracy") if k not in data]
        raise ValueError(f"{label}: missing {', '.join(missing)}")
    try:
        return Condition.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{label}: {problems}") from None


def conditions_from(items: Iterable[Any]) -> list[Condition]:
    """Conditions from dicts, objects with the attributes, or :class:`Condition` s.

    Also accepts a whole evaluation result: a mapping (or object) with a ``conditions`` list.
    Raises ``ValueError`` naming the condition and field for a missing or bad value, a
    duplicate name, or an empty list."""
    if isinstance(items, Mapping) and "conditions" in items:
        items = items["conditions"]
    elif not isinstance(items, (list, tuple)) and hasattr(items, "conditions"):
        items = items.conditions  # a result object (a pydantic model iterates its fields)
    if hasattr(items, "columns") and hasattr(items, "to_dict"):
        items = items.to_dict("records")  # a pandas DataFrame, one row per condition
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError("conditions must be a list of conditions (or an evaluation result)")
    conditions = [_read(item, i) for i, item in enumerate(items)]
    if not conditions:
        raise ValueError("no conditions to recommend from")
    seen: set[str] = set()
    for c in conditions:
        if c.name in seen:
            raise ValueError(f"condition {c.name!r} is given twice")
        seen.add(c.name)
    return conditions


class _Measured(Protocol):
    name: str
    accuracy: float

    @property
    def cost(self) -> Any: ...

    @property
    def latency_mean(self) -> Any: ...


_C = TypeVar("_C", bound=_Measured)


def pareto_front(conditions: Sequence[_C], by: str = "cost") -> list[_C]:
    """The conditions no other beats on both accuracy and ``by`` (``"cost"`` or ``"latency"``,
    the mean): nothing else is at least as accurate and at most as costly (or slow) and better
    on one of them. Sorted by ``by``; conditions without a ``by`` figure are left out.

    Any objects with ``accuracy``, ``cost`` and ``latency_mean`` will do: the recommender's
    conditions use this same front."""
    if by not in ("cost", "latency"):
        raise ValueError(f"by: expected 'cost' or 'latency' (got {by!r})")
    measure = "cost" if by == "cost" else "latency_mean"
    points = [
        (c, float(getattr(c, measure))) for c in conditions if getattr(c, measure) is not None
    ]
    front = [
        (c, m)
        for c, m in points
        if not any(
            o.accuracy >= c.accuracy and om <= m and (o.accuracy > c.accuracy or om < m)
            for o, om in points
        )
    ]
    return [c for c, _ in sorted(front, key=lambda p: (p[1], -p[0].accuracy))]


def _cheap_key(c: Condition) -> tuple[float, float, float]:
    latency = c.latency_mean if c.latency_mean is not None else float("inf")
    return (c.cost if c.cost is not None else float("inf"), -c.accuracy, latency)


def advise(conditions: Iterable[Any], margin: float = 0.02) -> EvaluationAdvice:
    """The cheapest condition within ``margin`` of the best accuracy, and the Pareto fronts.

    ``conditions``: see :func:`conditions_from`. ``margin``: in accuracy units, 0 to 1."""
    if not 0 <= margin <= 1:
        raise ValueError(f"margin must be between 0 and 1 (accuracy units), got {margin}")
    found = conditions_from(conditions)
    # min() keeps the first of equals: ties go to the order given.
    best = min(found, key=lambda c: (-c.accuracy, _cheap_key(c)[0], _cheap_key(c)[2]))
    floor = best.accuracy - margin
    # A float margin must not drop a condition exactly on the floor (0.7 - 0.1 != 0.6).
    close = [c for c in found if c.accuracy >= floor - 1e-9]
    priced = [c for c in close if c.cost is not None]
    choice = min(priced, key=_cheap_key) if priced else best
    saved = best.cost - choice.cost if best.cost is not None and choice.cost is not None else None
    if choice is best:
        summary = f"{best.name} is the most accurate ({best.accuracy:.1%})"
        summary += (
            " and no condition within the margin is cheaper." if priced else "; no cost measured."
        )
    else:
        summary = (
            f"{choice.name} ({choice.accuracy:.1%}) is within {margin:.1%} of the best,"
            f" {best.name} ({best.accuracy:.1%}), and costs {choice.cost:.4g}"
            f" instead of {best.cost if best.cost is not None else 'unknown'}."
        )
    return EvaluationAdvice(
        margin=margin,
        best=best,
        accuracy_floor=floor,
        choice=choice,
        within_margin=[c.name for c in close],
        cost_saved=saved,
        pareto_cost=pareto_front(found, "cost"),
        pareto_latency=pareto_front(found, "latency"),
        unpriced=[c.name for c in found if c.cost is None],
        untimed=[c.name for c in found if c.latency_mean is None],
        summary=summary,
    )
