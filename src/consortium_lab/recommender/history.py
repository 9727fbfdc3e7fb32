"""What the run log says about each model: agreement with the final synthesis, failures,
latency and cost.

Definitions
-----------
A model's calls
    Its answer-stage calls (not council peer reviews) in every finished run (completed,
    failed, cancelled or interrupted; a run still running is left out).
Failure rate
    Failed calls / calls.
Latency, cost
    Over the calls that have them: mean and 95th percentile latency (ms) of successful calls,
    mean and total cost of priced calls.
Agreement with the final synthesis
    For each member (model and instance) of a run that has a final synthesis (compare-mode
    runs have none): the shingle Jaccard of :func:`~consortium_lab.analysis.agreement.
    pairwise_agreement` between the member's last answer in the run (its parsed ``<answer>``,
    else its whole reply) and the synthesis. The member *agreed* when that is at least
    :data:`AGREE_AT`; a member whose last call failed did not agree (score 0). A model's
    agreement rate is the share of its judged members that agreed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from consortium_lab.analysis.agreement import pairwise_agreement

if TYPE_CHECKING:
    from consortium_lab.sinks.runlog.reader import Reader

__all__ = ["AGREE_AT", "ModelStats", "PastRun", "load_runs", "model_stats", "runs_from_rows"]

AGREE_AT = 0.5
"""The agreement (shingle Jaccard, 0-1) from which a member counts as agreeing."""


@dataclass
class ModelCalls:
    """One model's answer-stage calls in one run."""

    calls: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    agreements: list[float] = field(default_factory=list)
    """One per member instance of the model, when the run has a synthesis."""


@dataclass
class PastRun:
    """A finished run as a recommendation reads it."""

    run_id: str
    prompt: str
    mode: str | None
    synthesis: str | None
    models: dict[str, ModelCalls]


class ModelStats(BaseModel):
    """How one model did over a set of past runs."""

    model: str
    runs: int = Field(description="Runs it took part in.")
    calls: int = Field(description="Answer-stage calls.")
    failures: int
    failure_rate: float
    judged: int = Field(description="Member answers compared with a final synthesis.")
    agreed: int = Field(description="Of those, how many agreed with it.")
    agreement_rate: float | None = Field(description="agreed / judged; None when none judged.")
    agreement_mean: float | None = Field(description="Mean agreement score (0-1).")
    latency_mean_ms: float | None
    latency_p95_ms: float | None
    cost_mean: float | None = Field(description="Mean cost of its priced calls.")
    cost_total: float | None


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _agreement(text: str, synthesis: str) -> float:
    return pairwise_agreement({"member": text, "synthesis": synthesis}).get(
        ("member", "synthesis"), 0.0
    )


def runs_from_rows(rows: Iterable[dict[str, Any]]) -> list[PastRun]:
    """Past runs from :meth:`~consortium_lab.sinks.runlog.reader.Reader.answer_rows` rows."""
    runs: dict[str, PastRun] = {}
    last: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for row in rows:
        run = runs.get(row["run_id"])
        if run is None:
            synthesis = row["final_synthesis"] or None
            run = PastRun(row["run_id"], row["prompt"] or "", row["mode"], synthesis, {})
            runs[run.run_id] = run
            last[run.run_id] = {}
        calls = run.models.setdefault(row["model"], ModelCalls())
        calls.calls += 1
        if row["status"] == "failed":
            calls.failures += 1
        elif row["latency_ms"] is not None:
            calls.latencies.append(float(row["latency_ms"]))
        if row["cost"] is not None:
            calls.costs.append(float(row["cost"]))
        # Rows come in recording order: a later iteration's answer replaces the earlier one.
        last[run.run_id][(row["model"], int(row["instance"]))] = row
    for run in runs.values():
        if run.synthesis is None:
            continue
        for (model, _instance), row in last[run.run_id].items():
            text = (row["answer"] or row["text"] or "") if row["status"] != "failed" else ""
            score = _agreement(text, run.synthesis) if text.strip() else 0.0
            run.models[model].agreements.append(score)
    return list(runs.values())


def load_runs(store: Reader) -> list[PastRun]:
    """Every finished run of the run log ``store``, oldest first."""
    return runs_from_rows(store.answer_rows())


def model_stats(runs: Iterable[PastRun]) -> list[ModelStats]:
    """Each model's :class:`ModelStats` over ``runs``: the most agreeing first (then the fewest
    failures, the fastest, the model id)."""
    merged: dict[str, ModelCalls] = {}
    taken: dict[str, int] = {}
    for run in runs:
        for model, calls in run.models.items():
            into = merged.setdefault(model, ModelCalls())
            into.calls += calls.calls
            into.failures += calls.failures
            into.latencies += calls.latencies
            into.costs += calls.costs
            into.agreements += calls.agreements
            taken[model] = taken.get(model, 0) + 1
    stats = []
    for model, c in merged.items():
        agreed = sum(1 for a in c.agreements if a >= AGREE_AT)
        stats.append(
            ModelStats(
                model=model,
                runs=taken[model],
                calls=c.calls,
                failures=c.failures,
                failure_rate=c.failures / c.calls if c.calls else 0.0,
                judged=len(c.agreements),
                agreed=agreed,
                agreement_rate=agreed / len(c.agreements) if c.agreements else None,
                agreement_mean=fmean(c.agreements) if c.agreements else None,
                latency_mean_ms=fmean(c.latencies) if c.latencies else None,
                latency_p95_ms=_p95(c.latencies) if c.latencies else None,
                cost_mean=fmean(c.costs) if c.costs else None,
                cost_total=sum(c.costs) if c.costs else None,
            )
        )
    return sorted(stats, key=_rank_key)


def _rank_key(s: ModelStats) -> tuple[float, float, float, float, str]:
    return (
        -(s.agreement_rate if s.agreement_rate is not None else -1.0),
        -(s.agreement_mean if s.agreement_mean is not None else -1.0),
        s.failure_rate,
        s.latency_mean_ms if s.latency_mean_ms is not None else math.inf,
        s.model,
    )
