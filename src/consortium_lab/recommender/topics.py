"""Which members did best on past prompts like this one: a TF-IDF nearest-neighbour lookup.

scikit-learn is imported at a :class:`PromptIndex`'s first look-up with enough history, never
when this module is imported: a chat kernel that never asks for a recommendation (or has too
few runs for one) does not load it.

How a suggestion is made
------------------------
1. The index holds the past runs that have a final synthesis (agreement needs one), their
   prompts as TF-IDF vectors (English stop words removed, word unigrams and bigrams,
   sublinear term frequency).
2. The new prompt's nearest past prompts by cosine similarity, at most ``neighbours`` of them
   and only those at least ``min_similarity`` alike, are its *similar runs*; their number is
   the suggestion's *support*.
3. With fewer than ``min_runs`` runs in the index, or a support below ``min_runs``, there is
   not enough history: the suggestion names no members and says why.
4. Otherwise each model's :class:`~.history.ModelStats` over the similar runs ranks it (agreement
   rate with the synthesis, then mean agreement, failures, latency); the first ``size`` models
   (default: the median number of models in the similar runs) are suggested, one instance each.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from statistics import median
from typing import Any

from pydantic import BaseModel, Field

from consortium_lab.recommender.history import ModelStats, PastRun, model_stats

__all__ = ["DEFAULT_MIN_RUNS", "PromptIndex", "SimilarRun", "Suggestion"]

DEFAULT_MIN_RUNS = 5
"""Fewer similar past runs than this and no members are suggested."""


class SimilarRun(BaseModel):
    """A past run whose prompt is like the new one."""

    run_id: str
    prompt: str
    similarity: float = Field(description="Cosine similarity of the TF-IDF vectors (0-1).")


class Suggestion(BaseModel):
    """Members for a new prompt, from how they did on similar past prompts."""

    prompt: str
    enough_history: bool = Field(description="False: too few (similar) runs; no members named.")
    message: str = Field(description="One line for a person, e.g. the widget's hint.")
    members: list[str] = Field(description="Suggested model ids, best first.")
    support: int = Field(description="Similar past runs the suggestion rests on.")
    min_runs: int
    history: int = Field(description="Past runs with a synthesis in the index.")
    similar: list[SimilarRun]
    scores: list[ModelStats] = Field(description="Each model over the similar runs.")


class PromptIndex:
    """Past runs indexed by prompt (see the module docstring). Build once, ask many times."""

    def __init__(self, runs: Sequence[PastRun]) -> None:
        self.runs = [r for r in runs if r.synthesis is not None and r.prompt.strip()]
        self._vectorizer: Any = None
        self._neighbours: Any = None
        self._fitted = False

    def _fit(self) -> None:
        # On the first look-up, not when built: a log too short to suggest from never loads
        # scikit-learn (about 60 MB in a chat kernel).
        self._fitted = True
        if not self.runs:
            return
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.neighbors import NearestNeighbors

        vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True)
        try:
            matrix = vectorizer.fit_transform([r.prompt for r in self.runs])
        except ValueError:  # every prompt was stop words only: nothing to compare on
            return
        self._vectorizer = vectorizer
        self._neighbours = NearestNeighbors(metric="cosine", algorithm="brute").fit(matrix)

    def similar(
        self, prompt: str, *, neighbours: int = 20, min_similarity: float = 0.2
    ) -> list[SimilarRun]:
        """The past runs most like ``prompt``, most similar first."""
        if not self._fitted:
            self._fit()
        if self._vectorizer is None or not prompt.strip():
            return []
        query = self._vectorizer.transform([prompt])
        if query.nnz == 0:  # no word the index knows
            return []
        k = min(neighbours, len(self.runs))
        distances, indices = self._neighbours.kneighbors(query, n_neighbors=k)
        found = []
        for distance, index in zip(distances[0], indices[0], strict=True):
            similarity = 1.0 - float(distance)
            if similarity >= min_similarity:
                run = self.runs[int(index)]
                found.append(
                    SimilarRun(run_id=run.run_id, prompt=run.prompt, similarity=similarity)
                )
        return found

    def suggest(
        self,
        prompt: str,
        *,
        min_runs: int = DEFAULT_MIN_RUNS,
        neighbours: int = 20,
        min_similarity: float = 0.2,
        size: int | None = None,
        available: Collection[str] | None = None,
    ) -> Suggestion:
        """Members for ``prompt``; ``available`` limits them to models that can be used."""
        if min_runs < 1:
            raise ValueError(f"min_runs must be at least 1, got {min_runs}")
        if size is not None and size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        history = len(self.runs)
        similar = (
            self.similar(
                prompt, neighbours=max(neighbours, min_runs), min_similarity=min_similarity
            )
            if history >= min_runs
            else []
        )
        chosen = {s.run_id for s in similar}
        runs = [r for r in self.runs if r.run_id in chosen]
        scores = model_stats(runs)

        def answer(enough: bool, message: str, members: list[str]) -> Suggestion:
            return Suggestion(
                prompt=prompt,
                enough_history=enough,
                message=message,
                members=members,
                support=len(similar),
                min_runs=min_runs,
                history=history,
                similar=similar,
                scores=scores,
            )

        if history < min_runs:
            message = (
                f"Not enough history: {history} past run{'s' if history != 1 else ''} with a"
                f" synthesis, at least {min_runs} needed."
            )
            return answer(False, message, [])
        if len(similar) < min_runs:
            message = (
                f"Not enough history for prompts like this: {len(similar)} similar past"
                f" run{'s' if len(similar) != 1 else ''}, at least {min_runs} needed."
            )
            return answer(False, message, [])
        ranked = [
            s.model for s in scores if s.judged and (available is None or s.model in available)
        ]
        want = size or max(1, round(median(len(r.models) for r in runs)))
        members = ranked[:want]
        if not members:
            message = "None of the models used on similar prompts is available now."
            return answer(False, message, [])
        message = f"For prompts like this: {', '.join(members)} ({len(similar)} similar past runs)"
        return answer(True, message, members)
