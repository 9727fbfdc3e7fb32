"""The rows of the live charts' named datasets, computed from a run (pure Python, no Altair).

    =====================  ==========================================  =========================
    dataset                rows                                        chart (in ``charts``)
    =====================  ==========================================  =========================
    ``confidence``         ``{iteration: int, confidence: float}``     ``confidence_chart``
    ``member_confidence``  ``{member: str, iteration: int,             ``member_confidence_chart``
                           confidence: float | None}``
    ``consensus``          ``{consensus: float}`` (one row: replace    ``consensus_meter``
                           it, don't append)
    ``words``              ``{member: str, word: str, count: int,      ``word_cloud``
                           x: float, y: float, size: float}``
    =====================  ==========================================  =========================

:func:`result_rows` is the one place the rows of a run are built (the chat widget's turns and a
notebook's :func:`~consortium_lab.analysis.charts.with_data` both use it); the other builders
compute one dataset each. A :class:`~consortium_lab.engine.result.RunResult` folded from the
events so far works as well as a finished one.
"""

from __future__ import annotations

import cmath
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from consortium_lab.analysis.agreement import consensus, member_key, member_texts, word_frequencies

if TYPE_CHECKING:
    from consortium_lab.engine.result import RunResult

__all__ = [
    "CONFIDENCE",
    "CONSENSUS",
    "DATASETS",
    "MEMBER_CONFIDENCE",
    "SYNTHESIS_KEY",
    "WORDS",
    "confidence_rows",
    "consensus_rows",
    "member_confidence_rows",
    "result_rows",
    "word_rows",
]

CONFIDENCE = "confidence"
MEMBER_CONFIDENCE = "member_confidence"
CONSENSUS = "consensus"
WORDS = "words"

DATASETS: dict[str, str] = {
    CONFIDENCE: "{iteration: int, confidence: float}: the arbiter's confidence per iteration",
    MEMBER_CONFIDENCE: (
        "{member: str, iteration: int, confidence: float | null}: each member's own stated "
        "confidence per iteration"
    ),
    CONSENSUS: "{consensus: float}: one row, the consensus of the last iteration's answers",
    WORDS: (
        "{member: str, word: str, count: int, x: float, y: float, size: float}: word-cloud "
        "words with their pixel position and font size"
    ),
}
"""The named datasets of the live charts, and the shape of their rows."""

SYNTHESIS_KEY = "synthesis"
"""The ``member`` under which :func:`result_rows` puts the synthesis's words (member keys
always contain ``#``, so it cannot clash)."""

WORD_CLOUD_WIDTH = 400
WORD_CLOUD_HEIGHT = 260
WORD_CLOUD_MIN_FONT = 11.0
WORD_CLOUD_MAX_FONT = 36.0
_WORD_PAD = 2.0
_SPIRAL_GAP = 2.5  # px between turns of the spiral, per radian
_SPIRAL_STEP = 3.0  # px of arc between tried positions


def confidence_rows(result: RunResult) -> list[dict[str, Any]]:
    """Rows of dataset ``confidence``: ``{iteration, confidence}`` for each iteration whose
    synthesis stated a confidence, in iteration order (iterations without a synthesis or with
    an unknown confidence have no row)."""
    return [
        {"iteration": it.number, "confidence": float(it.synthesis.confidence)}
        for it in sorted(result.iterations, key=lambda it: it.number)
        if it.synthesis is not None and it.synthesis.confidence is not None
    ]


def member_confidence_rows(result: RunResult) -> list[dict[str, Any]]:
    """Rows of dataset ``member_confidence``: ``{member, iteration, confidence}`` for each
    successful member answer (``member``: ``"model#instance"``; ``confidence``: ``None`` where
    the member stated none), by iteration then in config order. Failed members and peer
    reviews have no row."""
    rows: list[dict[str, Any]] = []
    for it in sorted(result.iterations, key=lambda it: it.number):
        for m in result.in_config_order(it.answers):
            if m.status != "done":
                continue
            rows.append(
                {
                    "member": member_key(m.model, m.instance),
                    "iteration": it.number,
                    "confidence": None if m.confidence is None else float(m.confidence),
                }
            )
    return rows


def consensus_rows(result: RunResult) -> list[dict[str, Any]]:
    """Rows of dataset ``consensus``: ``[{consensus}]``, the
    :func:`~consortium_lab.analysis.agreement.consensus` of the successful answers of the last
    iteration that has answers; ``[]`` when it is undefined (fewer than two non-empty
    answers)."""
    value = consensus(member_texts(result.final_answers))
    return [] if value is None else [{"consensus": value}]


def _char_width(char: str) -> float:
    """Estimated advance of one character, in em, for a sans-serif font."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0.0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 1.0
    if char in "mwMW@":
        return 0.85
    if char in "iljtfr'.,:;!|":
        return 0.35
    return 0.6


def _font_size(count: int, lowest: int, highest: int) -> float:
    if highest == lowest:
        return (WORD_CLOUD_MIN_FONT + WORD_CLOUD_MAX_FONT) / 2
    share = (count - lowest) / (highest - lowest)
    return WORD_CLOUD_MIN_FONT + share * (WORD_CLOUD_MAX_FONT - WORD_CLOUD_MIN_FONT)


def _layout(
    words: Sequence[tuple[str, int]], width: float, height: float
) -> list[tuple[str, int, float, float, float]]:
    """Place ``words`` (most frequent first) on an Archimedean spiral from the canvas centre;
    ``(word, count, x, y, size)`` for those that fit without overlapping."""
    if not words:
        return []
    counts = [count for _, count in words]
    lowest, highest = min(counts), max(counts)
    aspect = width / height
    placed: list[tuple[float, float, float, float]] = []  # left, top, right, bottom
    out: list[tuple[str, int, float, float, float]] = []
    limit = math.hypot(width, height) / 2 + WORD_CLOUD_MAX_FONT
    for word, count in words:
        size = _font_size(count, lowest, highest)
        half_w = (sum(_char_width(c) for c in word) * size + 2 * _WORD_PAD) / 2
        half_h = (size * 1.1 + 2 * _WORD_PAD) / 2
        angle = 0.0
        while True:
            radius = _SPIRAL_GAP * angle
            if radius > limit:
                break  # no room left: the word is left out
            offset = cmath.rect(radius, angle)
            x, y = width / 2 + offset.real * aspect, height / 2 + offset.imag
            box = (x - half_w, y - half_h, x + half_w, y + half_h)
            inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
            if inside and not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
            ):
                placed.append(box)
                out.append((word, count, round(x, 1), round(y, 1), round(size, 1)))
                break
            # Step a roughly constant arc length along the spiral.
            angle += _SPIRAL_STEP / max(radius, _SPIRAL_STEP * 2)
    return out


def word_rows(
    texts: Mapping[str, str],
    *,
    top: int = 40,
    width: float = WORD_CLOUD_WIDTH,
    height: float = WORD_CLOUD_HEIGHT,
) -> list[dict[str, Any]]:
    """Rows of dataset ``words`` for each ``{member: text}``: the member's ``top``
    :func:`~consortium_lab.analysis.agreement.word_frequencies` laid out on a ``width`` × ``height``
    pixel canvas, one layout per member.

    Layout: words are placed in frequency order (ties by word) along an Archimedean spiral
    from the canvas centre, each at the first position where its estimated box (character
    widths estimated per character for a sans-serif font, plus padding) stays inside the
    canvas and overlaps no word placed before; a word that finds no such position is left
    out, so the least frequent go first. Font size (``size``, px) is linear in the count,
    from 11 px for the member's rarest word to 36 px for its most frequent (the midpoint when
    all counts are equal). ``x``/``y`` are the word's centre in pixels from the top-left."""
    rows: list[dict[str, Any]] = []
    for member, text in texts.items():
        for word, count, x, y, size in _layout(word_frequencies(text, top), width, height):
            rows.append(
                {"member": member, "word": word, "count": count, "x": x, "y": y, "size": size}
            )
    return rows


def result_rows(
    result: RunResult,
    *,
    words_top: int = 40,
    words: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every live dataset of ``result``: ``{name: rows}`` for
    :func:`~consortium_lab.analysis.charts.with_data` or for a front end.

    ``words`` holds, by default, the final answers of the members and, under
    :data:`SYNTHESIS_KEY`, the synthesis, each laid out with its ``words_top`` words. A caller
    that lays out other texts (the chat widget shows one iteration's answers, laid out once
    and cached) passes its rows as ``words``; they are used as they are."""
    if words is None:
        texts = member_texts(result.final_answers)
        if result.synthesis is not None:
            texts[SYNTHESIS_KEY] = result.synthesis.synthesis
        word_data = word_rows(texts, top=words_top)
    else:
        word_data = [dict(row) for row in words]
    return {
        CONFIDENCE: confidence_rows(result),
        MEMBER_CONFIDENCE: member_confidence_rows(result),
        CONSENSUS: consensus_rows(result),
        WORDS: word_data,
    }
