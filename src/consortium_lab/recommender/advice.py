"""``consortium_lab.recommend``: which models (or which condition) to use, from what was
measured — an evaluation's conditions, and the run log of your own prompts.

::

    from consortium_lab import recommend

    advice = recommend(evaluation=result["conditions"], margin=0.02)
    advice.evaluation.choice.name          # the cheapest condition within 2 points of the best
    advice = recommend("How do I sort a list in Python?")
    advice.for_prompt.members              # e.g. ['gpt-4o-mini', 'claude-3.5-haiku'], or []
    advice.for_prompt.message              # "For prompts like this: ... (7 similar past runs)"
    advice.models                          # per model: agreement, failures, latency, cost
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from consortium_lab import paths
from consortium_lab.recommender.conditions import EvaluationAdvice, advise
from consortium_lab.recommender.history import ModelStats, PastRun, load_runs, model_stats
from consortium_lab.recommender.topics import DEFAULT_MIN_RUNS, PromptIndex, Suggestion
from consortium_lab.sinks.runlog.store import RunStore

__all__ = ["Recommendation", "read_history", "recommend"]


class Recommendation(BaseModel):
    """What :func:`recommend` found; parts not asked for are ``None``."""

    evaluation: EvaluationAdvice | None = Field(
        None, description="From the evaluation given: the choice within the margin, the fronts."
    )
    models: list[ModelStats] = Field(
        default_factory=list, description="Each model over every finished run in the run log."
    )
    for_prompt: Suggestion | None = Field(None, description="Members for the prompt given.")
    runs: int = Field(0, description="Finished runs read from the run log.")
    run_log: str | None = Field(None, description="The run log read (None: not read).")


def read_history(path: str | Path | None = None) -> list[PastRun]:
    """Every finished run of the run log at ``path`` (default: the per-user log); ``[]`` when
    the file does not exist (it is not created)."""
    file = Path(path) if path is not None else paths.runs_db_path()
    if not file.exists():
        return []
    # recover=False: reading advice must not mark another process's runs as interrupted.
    with RunStore(file, recover=False) as store:
        return load_runs(store)


def recommend(
    prompt: str | None = None,
    *,
    evaluation: Iterable[Any] | None = None,
    margin: float = 0.02,
    path: str | Path | None = None,
    history: bool = True,
    min_runs: int = DEFAULT_MIN_RUNS,
    neighbours: int = 20,
    min_similarity: float = 0.2,
    size: int | None = None,
    available: Collection[str] | None = None,
) -> Recommendation:
    """Recommend models from measurements.

    ``evaluation``: an evaluation's conditions (dicts or objects with ``name``, ``accuracy``,
    ``cost``, ``latency_mean``..., or the whole ``consortium-lab eval --json`` object); gives
    ``.evaluation``: the cheapest condition within ``margin`` (accuracy units) of the best, and
    the Pareto fronts of accuracy against cost and latency (see :mod:`.conditions`).

    ``history`` (default on): read the run log at ``path`` (default: the per-user log) for
    ``.models``, each model's agreement with the final synthesis, failure rate, latency and
    cost. With a ``prompt`` too, ``.for_prompt`` suggests the members that did best on similar
    past prompts, or says there is not enough history (fewer than ``min_runs`` similar runs);
    ``available`` limits it to models that can be used, ``size`` sets how many (see
    :mod:`.topics`). scikit-learn is imported only for ``.for_prompt``.
    """
    advice = Recommendation()
    if evaluation is not None:
        advice.evaluation = advise(evaluation, margin)
    if not history:
        if prompt is not None:
            raise ValueError("a prompt needs the run log: leave history on")
        return advice
    file = Path(path) if path is not None else paths.runs_db_path()
    runs = read_history(file)
    advice.run_log = str(file)
    advice.runs = len(runs)
    advice.models = model_stats(runs)
    if prompt is not None:
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        advice.for_prompt = PromptIndex(runs).suggest(
            prompt,
            min_runs=min_runs,
            neighbours=neighbours,
            min_similarity=min_similarity,
            size=size,
            available=available,
        )
    return advice
