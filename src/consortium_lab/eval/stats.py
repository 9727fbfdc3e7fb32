"""The numbers behind a condition: accuracy with a 95% bootstrap interval, latency mean and
p95, tokens and cost (:func:`summarise`).

The interval resamples *items* (each item's accuracy is the mean over its samples, so K
samples of one item are not counted as K independent items), ``resamples`` times, and takes
the 2.5th and 97.5th percentiles. ``seed`` fixes the resampling, so the same results give the
same interval; the default seed is :data:`DEFAULT_SEED`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from consortium_lab.eval.report import ConditionResult, ItemResult

# The one Pareto front, kept in the recommender's light module (chat kernels import it).
from consortium_lab.recommender.conditions import pareto_front

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "bootstrap_interval",
    "pareto_front",
    "summarise",
]

DEFAULT_SEED = 0

DEFAULT_RESAMPLES = 2000


def bootstrap_interval(
    per_item: Sequence[float],
    *,
    seed: int | None = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``per_item`` (each in 0..1).
    ``seed=None`` draws fresh randomness. Empty input gives ``(0.0, 0.0)``."""
    if not per_item:
        return (0.0, 0.0)
    if resamples < 1:
        raise ValueError(f"resamples: expected at least 1 (got {resamples})")
    values = np.asarray(per_item, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def summarise(
    name: str,
    results: Sequence[ItemResult],
    *,
    seed: int | None = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> ConditionResult:
    """One condition's :class:`ConditionResult` from its item results (every sample)."""
    by_item: dict[str, list[bool]] = defaultdict(list)
    for result in results:
        by_item[result.item_id].append(result.correct)
    correct = sum(r.correct for r in results)
    n = len(results)
    low, high = bootstrap_interval(
        [sum(v) / len(v) for v in by_item.values()], seed=seed, resamples=resamples
    )
    latencies = [r.latency_s for r in results if r.latency_s is not None]
    costs = [r.cost for r in results if r.cost is not None]
    return ConditionResult(
        name=name,
        correct=correct,
        n=n,
        accuracy=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        latency_mean=float(np.mean(latencies)) if latencies else None,
        latency_p95=float(np.percentile(latencies, 95)) if latencies else None,
        tokens=sum(r.tokens for r in results),
        cost=float(sum(costs)) if costs else None,
        failures=sum(r.error is not None for r in results),
    )
