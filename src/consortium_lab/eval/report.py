"""What an evaluation reports: :class:`EvalReport`, one :class:`ConditionResult` per condition
and one :class:`ItemResult` per item, condition and sample.

These models are the contract between the evaluation and its readers: the CLI prints
``EvalReport.model_dump(mode="json")`` for ``--json``, the charts and
:mod:`consortium_lab.recommend` read them, and :func:`consortium_lab.eval.store.EvalStore.report`
rebuilds one from the run log. Latencies are seconds; cost is in the gateway's price table
currency (None when no price is known for a model that answered).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["ConditionResult", "EvalReport", "EvalStatus", "ItemResult"]

EvalStatus = Literal["running", "completed", "interrupted", "failed"]


class ItemResult(BaseModel):
    """One item answered by one condition (one sample of it), as scored."""

    item_id: str = Field(description="The dataset item's id.")
    condition: str = Field(description="The condition's name, e.g. 'member:gpt-4o-mini'.")
    sample: int = Field(0, description="0-based sample index (0 when --samples is 1).")
    answer: str = Field("", description="What the user would read: the text that was scored.")
    extracted: str | None = Field(
        None, description="What the scorer read from the answer (a number, a letter...)."
    )
    correct: bool = Field(description="The scorer's verdict; False when the run failed.")
    run_id: str | None = Field(None, description="The run in the run log that answered.")
    latency_s: float | None = Field(None, description="Wall time of the run, seconds.")
    tokens: int = Field(0, description="Input plus output tokens of every call of the run.")
    cost: float | None = Field(None, description="Cost of the run (None: no known price).")
    error: str | None = Field(None, description="Why the run failed, when it did.")
    verdict: str | None = Field(None, description="The judge scorer's own words, when used.")


class ConditionResult(BaseModel):
    """One condition's totals over every item and sample it answered."""

    name: str = Field(description="'member:<model id>', 'vote', 'consortium', 'council', ...")
    correct: int = Field(description="How many answers were scored correct.")
    n: int = Field(description="How many answers were scored (items x samples).")
    accuracy: float = Field(description="correct / n (0 when n is 0).")
    ci_low: float = Field(description="Lower end of the 95% bootstrap interval of accuracy.")
    ci_high: float = Field(description="Upper end of the 95% bootstrap interval of accuracy.")
    latency_mean: float | None = Field(None, description="Mean seconds per answer.")
    latency_p95: float | None = Field(None, description="95th percentile seconds per answer.")
    tokens: int = Field(0, description="Total tokens of every call of the condition.")
    cost: float | None = Field(None, description="Total cost (None when no price was known).")
    failures: int = Field(0, description="Answers whose run failed (counted as wrong).")


class EvalReport(BaseModel):
    """A whole evaluation: its settings, per-condition totals and per-item results."""

    id: str = Field(description="The evaluation's id in the run log.")
    tag: str = Field(description="The tag its runs are grouped under (`runs list --tag`).")
    dataset: str = Field(description="Where the items came from (a path, or 'python').")
    scorer: str = Field(description="The scorer's name.")
    samples: int = Field(1, description="Samples per item and condition.")
    status: EvalStatus = "running"
    created_at: str = ""
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Members, arbiter, modes, cache mode, seed..."
    )
    skipped: int = Field(0, description="Bad dataset rows skipped with skip_bad.")
    notes: list[str] = Field(default_factory=list, description="What the user should know.")
    conditions: list[ConditionResult] = Field(default_factory=list)
    items: list[ItemResult] = Field(default_factory=list)

    def condition(self, name: str) -> ConditionResult:
        """The totals of condition ``name``; KeyError naming the known ones otherwise."""
        for result in self.conditions:
            if result.name == name:
                return result
        known = ", ".join(c.name for c in self.conditions) or "none"
        raise KeyError(f"no condition {name!r} in evaluation {self.id} (it has: {known})")
