"""Upstream's ``orchestrate()`` result, built from a :class:`RunResult`.

Upstream's types, not ours: a confidence is always a float (a member that states none reads 0.5
and an unparsed synthesis 0.0, as llm-consortium 0.8.0 does), every answered member carries an
``id`` (its 1-based position among the iteration's answers in config order: the number the
arbiter saw and ranks by) and a ``response_id`` (its id in ``llm``'s log, else a stable id made
of the run, iteration and member), and a ranking's top id is resolved to ``chosen_response_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consortium_lab.engine.records import MemberRecord, SynthesisRecord
from consortium_lab.engine.result import IterationResult, RunResult

__all__ = [
    "MEMBER_DEFAULT_CONFIDENCE",
    "NOT_MEASURED",
    "NO_ARBITER_ANALYSIS",
    "member_ids",
    "response_id_of",
    "to_upstream_dict",
]

MEMBER_DEFAULT_CONFIDENCE = 0.5
"""What upstream reports for a member that states no confidence."""

NO_ARBITER_ANALYSIS = "No arbiter defined, using first model response."
"""Upstream's analysis text when a consortium has no arbiter."""

Geometry = Mapping[int, Mapping[str, Any]]
"""``{iteration number: {"geometric_confidence", "centroid_vector", ...}}`` (see
:mod:`consortium_lab.compat.geometry`)."""

NOT_MEASURED: dict[str, Any] = {"geometric_confidence": None, "centroid_vector": None}
# Nothing measured (no embedding backend): None (unknown), not upstream's 0.0, which reads
# as "no agreement" (see docs/switching.md).


def response_id_of(run_id: str, member: MemberRecord | SynthesisRecord) -> str:
    """The member's (or arbiter's) id in ``llm``'s log, else a stable id for this run."""
    if member.response_id:
        return member.response_id
    if isinstance(member, MemberRecord):
        return f"{run_id}-{member.iteration}-{member.model}-{member.instance}"
    return f"{run_id}-{member.iteration}-arbiter"


def member_ids(answers: list[MemberRecord]) -> dict[tuple[str, int], int]:
    """``(model, instance)`` -> the id the arbiter saw: ``answers`` (in config order) that
    succeeded, numbered from 1 (the engine's candidate numbering, which rankings refer to)."""
    done = [m for m in answers if m.status == "done"]
    return {m.key: i for i, m in enumerate(done, start=1)}


def _member(run_id: str, m: MemberRecord, ids: dict[tuple[str, int], int]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": m.model,
        "instance": m.instance - 1,  # upstream numbers instances from 0
        "response": m.text if m.status == "done" else "",
        "answer": m.answer if m.status == "done" else "",
        "thought_process": m.thought_process if m.status == "done" else "",
        "confidence": float(
            m.confidence if m.confidence is not None else MEMBER_DEFAULT_CONFIDENCE
        ),
        "error": m.error,
    }
    if m.status == "done":
        row["id"] = ids[m.key]
        row["response_id"] = response_id_of(run_id, m)
    return row


def _synthesis(
    run_id: str,
    it: IterationResult,
    members: list[dict[str, Any]],
    no_arbiter: bool,
    geometry: Mapping[str, Any],
) -> dict[str, Any]:
    ok = [r for r in members if r.get("error") is None and "id" in r]
    if no_arbiter:
        # Upstream: no arbiter call; the first answer, fully trusted.
        return {
            "synthesis": ok[0]["response"] if ok else "",
            "confidence": 1.0,
            "analysis": NO_ARBITER_ANALYSIS,
            "dissent": "",
            "needs_iteration": False,
            "refinement_areas": [],
            "ranking": [r["id"] for r in ok],
            "chosen_response_id": ok[0]["response_id"] if ok else None,
            "raw_arbiter_response": "",
            **geometry,
        }
    s = it.synthesis
    if s is None:
        return {}
    by_id = {r["id"]: r for r in ok}
    chosen = by_id.get(s.ranking[0]) if s.ranking else None
    return {
        "synthesis": s.synthesis,
        "confidence": float(s.confidence if s.confidence is not None else 0.0),
        "analysis": s.analysis,
        "dissent": s.dissent,
        "needs_iteration": s.needs_iteration,
        "refinement_areas": list(s.refinement_areas),
        "ranking": list(s.ranking),
        "chosen_response_id": chosen["response_id"] if chosen else None,
        "raw_arbiter_response": s.raw,
        **geometry,
        "parse_ok": s.parse_ok,
        "response_id": response_id_of(run_id, s),
    }


def iteration_dicts(
    result: RunResult, *, no_arbiter: bool = False, geometry: Geometry | None = None
) -> list[dict[str, Any]]:
    """Upstream's ``iterations`` list: members, ids and the synthesis of each iteration
    (with its ``geometry`` where measured)."""
    out = []
    for it in result.iterations:
        answers = result.in_config_order(it.answers)
        ids = member_ids(answers)
        members = [_member(result.run_id, m, ids) for m in answers]
        out.append(
            {
                "iteration": it.number,
                "selected_models": {m.model: 1 for m in it.answers},
                "model_responses": members,
                "synthesis": _synthesis(
                    result.run_id,
                    it,
                    members,
                    no_arbiter,
                    (geometry or {}).get(it.number, NOT_MEASURED),
                ),
            }
        )
    return out


def to_upstream_dict(
    result: RunResult,
    *,
    consortium_id: str | None = None,
    original_prompt: str | None = None,
    config: dict[str, Any] | None = None,
    no_arbiter: bool = False,
    geometry: Geometry | None = None,
) -> dict[str, Any]:
    """Upstream's ``orchestrate`` result shape, with upstream's types, plus our seed export
    keys (``model_responses`` of the last iteration, ``metadata.models_used`` …).

    ``no_arbiter``: the run had no arbiter (upstream's ``arbiter=None``): each iteration's
    synthesis is its first answer with confidence 1.0. ``geometry``: each iteration's
    geometric confidence, centroid and outliers (``None`` where not measured).
    """
    seed = result.to_dict()
    iterations = iteration_dicts(result, no_arbiter=no_arbiter, geometry=geometry)
    last = iterations[-1] if iterations else None
    synthesis = dict(last["synthesis"]) if last else {}
    if not synthesis:
        synthesis = {**seed["synthesis"], "confidence": float(seed["synthesis"]["confidence"] or 0)}
    return {
        **seed,
        "original_prompt": original_prompt if original_prompt is not None else result.prompt,
        "model_responses": list(last["model_responses"]) if last else [],
        "synthesis": synthesis,
        "iterations": iterations,
        "metadata": {
            **seed["metadata"],
            "arbiter": None if no_arbiter else seed["metadata"]["arbiter"],
            "total_iterations": len(result.iterations),
            "consortium_id": consortium_id or result.run_id,
            "config": config if config is not None else result.config,
        },
    }
