"""Evaluation: does the consortium beat the best single model, and at what cost?

::

    from consortium_lab.eval import evaluate_sync

    report = evaluate_sync("questions.jsonl", models=["gpt-4o-mini", "claude-3.5-haiku"],
                           arbiter="gpt-4o", modes=["members", "consortium"], scorer="numeric")
    report.condition("consortium").accuracy

See ``docs/eval.md``. The result models (:mod:`.report`) are the contract other parts read;
the charts (:mod:`.charts`, Altair) are imported on their own.
"""

from __future__ import annotations

from consortium_lab.eval.conditions import Condition, build_conditions
from consortium_lab.eval.dataset import BadRow, Dataset, DatasetError, Item, load_dataset
from consortium_lab.eval.report import ConditionResult, EvalReport, EvalStatus, ItemResult
from consortium_lab.eval.runner import Progress, evaluate, evaluate_sync
from consortium_lab.eval.scorers import Score, Scorer, get_scorer
from consortium_lab.eval.stats import bootstrap_interval, pareto_front
from consortium_lab.eval.store import EvalStore

__all__ = [
    "BadRow",
    "Condition",
    "ConditionResult",
    "Dataset",
    "DatasetError",
    "EvalReport",
    "EvalStatus",
    "EvalStore",
    "Item",
    "ItemResult",
    "Progress",
    "Score",
    "Scorer",
    "bootstrap_interval",
    "build_conditions",
    "evaluate",
    "evaluate_sync",
    "get_scorer",
    "load_dataset",
    "pareto_front",
]
