"""A turn as the widget's traits hold it, and the live charts' specs.

A turn is ``RunResult.to_dict()`` plus a ``ui`` key: member order, phase, agreement highlights
(as JavaScript string offsets), the rows of the live charts' named datasets and the name of the
confidence chart its threshold needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consortium_lab.analysis import agreement as analysis
from consortium_lab.engine.result import IterationResult, RunResult
from consortium_lab.widget.chart_specs import threshold_key

__all__ = [
    "WORD_CLOUD_TOP",
    "HighlightCache",
    "member_slots",
    "turn_view",
]

WORD_CLOUD_TOP = 40
"""The most words a member's word cloud shows."""


def _utf16(text: str, offset: int) -> int:
    """A Python (code point) offset into ``text`` as a JavaScript (UTF-16) offset."""
    prefix = text[:offset]
    return offset + sum(1 for ch in prefix if ord(ch) > 0xFFFF)


def _js_spans(text: str, spans: list[analysis.Span]) -> list[dict[str, Any]]:
    wide = any(ord(ch) > 0xFFFF for ch in text)
    out = []
    for span in spans:
        data = span.to_dict()
        if wide:
            data["start"], data["end"] = _utf16(text, span.start), _utf16(text, span.end)
        out.append(data)
    return out


def member_slots(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The members of ``config`` in config order: ``{model, instance, key}`` per instance."""
    models = config.get("models") or {}
    return [
        {"model": model, "instance": i, "key": analysis.member_key(model, i)}
        for model, count in models.items()
        for i in range(1, int(count) + 1)
    ]


class HighlightCache:
    """Agreement spans per (run, iteration, answers done): computed once, not per flush."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def iteration(self, run_id: str, it: IterationResult) -> dict[str, Any]:
        done = [m for m in it.answers if m.status == "done"]
        synthesis = it.synthesis
        key = (run_id, it.number, len(done), synthesis is not None)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        texts = analysis.member_texts(done)
        spans = analysis.highlight_agreement(texts) if len(texts) >= 2 else {}
        data: dict[str, Any] = {
            "members": {k: _js_spans(texts[k], v) for k, v in spans.items()},
        }
        if synthesis is not None and synthesis.refinement_areas:
            data["synthesis"] = _js_spans(
                synthesis.synthesis,
                analysis.highlight_refinement_areas(
                    synthesis.synthesis, synthesis.refinement_areas
                ),
            )
        self._put(key, data)
        return data

    def words(self, result: RunResult, it: IterationResult) -> list[dict[str, Any]]:
        """Rows of dataset ``words`` (:func:`~consortium_lab.analysis.rows.word_rows`) for the
        answers of one iteration, in config order: laid out once per (run, iteration, answers
        done)."""
        from consortium_lab.analysis import rows as chart_rows

        done = [m for m in it.answers if m.status == "done"]
        key = ("words", result.run_id, it.number, len(done))
        cached = self._cache.get(key)
        if cached is not None:
            return list(cached["rows"])
        texts = analysis.member_texts(result.in_config_order(done))
        rows = chart_rows.word_rows(texts, top=WORD_CLOUD_TOP)
        self._put(key, {"rows": rows})
        return list(rows)

    def _put(self, key: tuple[Any, ...], data: dict[str, Any]) -> None:
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[key] = data


def _words_iteration(result: RunResult, *, live: bool) -> IterationResult | None:
    """The iteration whose answers the word clouds show: a finished turn's last iteration
    with answers; a live turn's latest iteration in which every member has answered (so
    a cloud never shows half the members), or None."""
    members = len(member_slots(result.config))
    for it in reversed(result.iterations):
        answers = it.answers
        if not answers:
            continue
        if not live or len(answers) >= members:
            return it
    return None


def turn_view(
    result: RunResult,
    *,
    phase: str | None = None,
    highlights: HighlightCache | None = None,
) -> dict[str, Any]:
    """One turn as the widget's traits hold it: ``result.to_dict()`` plus ``ui`` (member
    order, status, phase, per-iteration agreement highlights, chart rows, threshold).

    ``ui.charts.words`` holds the word-cloud rows (:func:`charts.word_rows`) of the members'
    answers of the last iteration (of a live turn: of its latest iteration every member has
    answered; ``[]`` until then)."""
    from consortium_lab.analysis import rows as chart_rows

    highlights = highlights or HighlightCache()
    data = result.to_dict()
    words_it = _words_iteration(result, live=result.status == "running")
    words = [] if words_it is None else highlights.words(result, words_it)
    rows = chart_rows.result_rows(result, words=words)
    data["ui"] = {
        "run_id": result.run_id,
        "status": result.status,
        "phase": phase or result.status,
        "members": member_slots(result.config),
        "threshold": result.config.get("confidence_threshold"),
        "confidence_chart": threshold_key(result.config.get("confidence_threshold")),
        "highlights": {
            str(it.number): highlights.iteration(result.run_id, it) for it in result.iterations
        },
        "charts": rows,
        "errors": dict(result.errors),
        # Why a turn ended 'completed_with_warnings': shown on the turn itself.
        "warnings": list(result.warnings),
        # Shown on each member while it runs: a local model may take up to this long.
        "time_limit": (result.config.get("limits") or {}).get("total_timeout"),
    }
    return data
