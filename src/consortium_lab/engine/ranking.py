"""Ranking: the council's aggregate of its peer reviews, and rank judging's decision."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from consortium_lab.prompts import templates as prompts
from consortium_lab.prompts.parsing import ArbiterParse, parse_arbiter_response, parse_ranking

__all__ = ["aggregate_ranking", "rank_decision"]


def aggregate_ranking(reviews: Iterable[Sequence[int]], ids: Sequence[int]) -> list[int]:
    """Council aggregate: ids ordered by mean position across reviews (llm-council's rule); an id
    a reviewer left out counts as ranked last by that reviewer. Ties keep the original order."""
    reviews = [r for r in reviews if r]
    if not reviews:
        return []
    worst = len(ids) + 1

    def mean_position(i: int) -> float:
        return sum((r.index(i) + 1) if i in r else worst for r in reviews) / len(reviews)

    return sorted(ids, key=mean_position)


def rank_decision(text: str, candidates: list[prompts.Candidate]) -> ArbiterParse:
    """Rank judging: the synthesis is the top-ranked answer; the confidence is the arbiter's
    stated one, else the top member's own."""
    ids = {c.id for c in candidates}
    ranking = [i for i in parse_ranking(text) if i in ids]
    parsed = parse_arbiter_response(text)
    if not ranking:
        return parsed.model_copy(
            update={
                "parse_ok": False,
                "warnings": [*parsed.warnings, "no ranking of the given responses found"],
            }
        )
    top = next(c for c in candidates if c.id == ranking[0])
    return ArbiterParse(
        synthesis=top.answer,
        confidence=parsed.confidence if parsed.confidence is not None else top.confidence,
        analysis=f"Ranked best: response {top.id} ({top.model}). Ranking: {ranking}",
        needs_iteration=parsed.needs_iteration,
        refinement_areas=parsed.refinement_areas,
        ranking=ranking,
        parse_ok=True,
        raw=text,
    )
