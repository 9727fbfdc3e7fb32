"""Evaluation: does the consortium beat the best single model, and at what cost?

See ``docs/eval.md``. The result models (:mod:`.report`) are the contract other parts read.
"""

from __future__ import annotations

from consortium_lab.eval.report import ConditionResult, EvalReport, EvalStatus, ItemResult

__all__ = ["ConditionResult", "EvalReport", "EvalStatus", "ItemResult"]
