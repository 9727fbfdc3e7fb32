"""Vega-Lite chart specs of a run and of your run log, built with Altair.

This module builds chart *specs* only: no HTML, no rendering, no I/O. The chat widget embeds
them with vega-embed; a notebook displays them as Altair charts. (Needs ``altair``, part of
the ``widget`` extra.)

Live charts and named datasets
    The charts of a run read their rows from *named* datasets (``{"data": {"name": ...}}``)
    and carry no rows themselves, so a front end embeds a spec once and then streams rows in
    with Vega changesets instead of re-embedding::

        view.change("confidence", vega.changeset().insert(rows))

    =====================  ==================================  ===============================
    dataset                rows                                chart
    =====================  ==================================  ===============================
    ``confidence``         ``{iteration: int,                  :func:`confidence_chart`
                           confidence: float}``
    ``member_confidence``  ``{member: str, iteration: int,     :func:`member_confidence_chart`
                           confidence: float | None}``
    ``consensus``          ``{consensus: float}`` (one row:    :func:`consensus_meter`
                           replace it, don't append)
    ``words``              ``{member: str, word: str,          :func:`word_cloud`
                           count: int, x: float, y: float,
                           size: float}``
    =====================  ==================================  ===============================

    The row builders (:func:`confidence_rows`, :func:`member_confidence_rows`,
    :func:`consensus_rows`, :func:`word_rows`, or :func:`result_rows` for all four) compute
    these rows from a :class:`~consortium_lab.engine.result.RunResult` (also one folded from events
    so
    far), and :func:`with_data` inlines rows into a spec (as top-level ``datasets``, so the
    names keep working) for a notebook or a static export.

Static charts
    The usage-dashboard charts (:func:`runs_over_time_chart`, :func:`models_used_chart`,
    :func:`confidence_by_model_chart`, :func:`latency_by_model_chart`,
    :func:`tokens_by_model_chart`, :func:`usage_dashboard`) summarise a frame shaped like
    :func:`consortium_lab.runs.to_pandas` (one row per member response). They aggregate in
    Python and embed their few rows inline (``{"values": [...]}``).

Self-contained
    Specs reference no URL, CDN, font or remote data (the ``$schema`` key aside), and set no
    embed options (``actions`` and the like are for the front end to choose). Inline data is
    always given as ``alt.Data(values=...)`` built here, so ``alt.data_transformers`` (whose
    settings this module never changes) do not apply.
"""

from __future__ import annotations

import cmath
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import altair as alt
import pandas as pd

from consortium_lab.analysis.agreement import consensus, member_key, member_texts, word_frequencies

if TYPE_CHECKING:
    from consortium_lab.engine.result import MemberResult, RunResult

__all__ = [
    "CONFIDENCE",
    "CONSENSUS",
    "DATASETS",
    "MEMBER_CONFIDENCE",
    "SYNTHESIS_KEY",
    "WORDS",
    "confidence_by_model_chart",
    "confidence_chart",
    "confidence_rows",
    "consensus_meter",
    "consensus_rows",
    "latency_by_model_chart",
    "member_confidence_chart",
    "member_confidence_rows",
    "models_used_chart",
    "result_rows",
    "runs_over_time_chart",
    "spec",
    "tokens_by_model_chart",
    "usage_dashboard",
    "with_data",
    "word_cloud",
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

Width = float | Literal["container"]
ChartT = TypeVar(
    "ChartT",
    alt.Chart,
    alt.LayerChart,
    alt.HConcatChart,
    alt.VConcatChart,
    alt.ConcatChart,
    alt.FacetChart,
    alt.RepeatChart,
)

UNKNOWN_FILL = "#d9d9d9"
UNKNOWN_STROKE = "#8c8c8c"
MUTED = "#8c8c8c"

WORD_CLOUD_WIDTH = 400
WORD_CLOUD_HEIGHT = 260
WORD_CLOUD_MIN_FONT = 11.0
WORD_CLOUD_MAX_FONT = 36.0
_WORD_PAD = 2.0
_SPIRAL_GAP = 2.5  # px between turns of the spiral, per radian
_SPIRAL_STEP = 3.0  # px of arc between tried positions


# -- generic helpers ---------------------------------------------------------------------------


def spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec as a dict (``chart.to_dict()``, validated against the
    Vega-Lite schema)."""
    return chart.to_dict()


def with_data(chart: ChartT, data: Mapping[str, Sequence[Mapping[str, Any]]]) -> ChartT:
    """A copy of ``chart`` carrying ``data`` (``{dataset name: rows}``) as top-level
    ``datasets``: the named data references resolve to these rows, and stay named, so the
    rendered view still accepts changesets. Rows given here replace rows of the same name
    already inlined; the chart passed in is not changed."""
    copy = chart.copy(deep=True)
    existing = copy.datasets if isinstance(copy.datasets, Mapping) else {}
    copy.datasets = {
        **dict(existing),
        **{name: [dict(row) for row in rows] for name, rows in data.items()},
    }
    return copy


def _named(name: str) -> alt.Data:
    return alt.Data(name=name)


def _inline(rows: Sequence[Mapping[str, Any]]) -> alt.Data:
    return alt.Data(values=[dict(row) for row in rows])


def _sized(chart: ChartT, width: Width | None, height: float | None) -> ChartT:
    props: dict[str, Any] = {}
    if width is not None:
        props["width"] = width
    if height is not None:
        props["height"] = height
    return chart.properties(**props) if props else chart


# -- live charts -------------------------------------------------------------------------------


def confidence_chart(
    threshold: float,
    *,
    title: str = "Arbiter confidence",
    width: Width | None = 360,
    height: float | None = 200,
) -> alt.LayerChart:
    """The arbiter's confidence per iteration (dataset ``confidence``) as a line with points,
    iterations as integer (ordinal) categories on x, confidence on y over [0, 1], and the
    confidence ``threshold`` as a dashed horizontal rule labelled "threshold NN%". The rule is
    drawn from a one-row inline layer, not from a dataset. Raises ``ValueError`` when
    ``threshold`` is outside [0, 1]."""
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    line = (
        alt.Chart(_named(CONFIDENCE))
        .mark_line(point=alt.OverlayMarkDef(size=60, filled=True))
        .encode(
            x=alt.X("iteration:O", title="iteration", axis=alt.Axis(labelAngle=0)),
            y=alt.Y(
                "confidence:Q",
                title="confidence",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=[
                alt.Tooltip("iteration:O", title="iteration"),
                alt.Tooltip("confidence:Q", title="confidence", format=".0%"),
            ],
        )
    )
    marker = _inline([{"threshold": threshold, "label": f"threshold {threshold:.0%}"}])
    rule = (
        alt.Chart(marker)
        .mark_rule(color=MUTED, strokeDash=[6, 4])
        .encode(y=alt.Y("threshold:Q"), tooltip=[alt.Tooltip("label:N", title="threshold")])
    )
    label = (
        alt.Chart(marker)
        .mark_text(x="width", align="right", baseline="bottom", dx=-2, dy=-3, color=MUTED)
        .encode(y=alt.Y("threshold:Q"), text=alt.Text("label:N"))
    )
    chart = alt.LayerChart(layer=[line, rule, label]).properties(title=title)
    return _sized(chart, width, height)


def member_confidence_chart(
    *,
    title: str = "Member confidence",
    width: Width | None = 360,
    height: float | None = 200,
) -> alt.LayerChart:
    """Each member's own confidence per iteration (dataset ``member_confidence``): bars
    grouped by iteration, one colour per member, y over [0, 1].

    A member that stated no confidence (``confidence`` null) gets a full-height light-grey
    bar with a dashed grey outline and a "?" above it, its tooltip reading "unknown", so an
    unknown confidence is never mistaken for a low one; the subtitle says so."""
    known = "isValid(datum.confidence)"
    base = alt.Chart(_named(MEMBER_CONFIDENCE)).transform_calculate(
        shown=f"{known} ? datum.confidence : 1",
        confidence_label=f"{known} ? format(datum.confidence, '.0%') : 'unknown'",
    )
    x = alt.X("iteration:O", title="iteration", axis=alt.Axis(labelAngle=0))
    x_offset = alt.XOffset("member:N")
    y = alt.Y(
        "shown:Q",
        title="confidence",
        scale=alt.Scale(domain=[0, 1]),
        axis=alt.Axis(format="%"),
    )
    bars = base.mark_bar().encode(
        x=x,
        xOffset=x_offset,
        y=y,
        color=alt.when(known)
        .then(alt.Color("member:N", title="member"))
        .otherwise(alt.value(UNKNOWN_FILL)),
        stroke=alt.when(known).then(alt.value("transparent")).otherwise(alt.value(UNKNOWN_STROKE)),
        strokeDash=alt.when(known).then(alt.value([1, 0])).otherwise(alt.value([4, 3])),
        tooltip=[
            alt.Tooltip("member:N", title="member"),
            alt.Tooltip("iteration:O", title="iteration"),
            alt.Tooltip("confidence_label:N", title="confidence"),
        ],
    )
    unknown = (
        base.transform_filter(f"!{known}")
        .mark_text(baseline="bottom", dy=-2, color=UNKNOWN_STROKE)
        .encode(x=x, xOffset=x_offset, y=y, text=alt.value("?"))
    )
    chart = alt.LayerChart(layer=[bars, unknown]).properties(
        title=alt.TitleParams(title, subtitle="grey dashed bar: confidence not stated")
    )
    return _sized(chart, width, height)


def consensus_meter(
    *,
    title: str = "Consensus",
    width: Width | None = 300,
    height: float | None = 22,
) -> alt.LayerChart:
    """A horizontal gauge from 0 to 1 (dataset ``consensus``, one row): a light track over the
    whole range, a bar up to the consensus coloured from red (0) to green (1), and the value
    as a percentage inside the right end of the track (so a container-width embed never
    clips it). Keep a single row in the dataset (a changeset that removes
    the old row and inserts the new one)."""
    scale = alt.Scale(domain=[0, 1], clamp=True)
    track = (
        alt.Chart(_inline([{"start": 0.0, "end": 1.0}]))
        .mark_bar(color="#eeeeee")
        .encode(
            x=alt.X("start:Q", scale=scale, title=None, axis=alt.Axis(format="%", tickCount=5)),
            x2=alt.X2("end:Q"),
        )
    )
    bar = (
        alt.Chart(_named(CONSENSUS))
        .mark_bar()
        .encode(
            x=alt.X("consensus:Q", scale=scale),
            color=alt.Color(
                "consensus:Q",
                scale=alt.Scale(domain=[0, 1], scheme="redyellowgreen"),
                legend=None,
            ),
            tooltip=[alt.Tooltip("consensus:Q", title="consensus", format=".0%")],
        )
    )
    label = (
        alt.Chart(_named(CONSENSUS))
        .mark_text(x="width", align="right", baseline="middle", dx=-4, fontWeight="bold")
        .encode(text=alt.Text("consensus:Q", format=".0%"))
    )
    chart = alt.LayerChart(layer=[track, bar, label]).properties(title=title)
    return _sized(chart, width, height)


def word_cloud(
    member: str | None = None,
    *,
    title: str | None = None,
    width: float = WORD_CLOUD_WIDTH,
    height: float = WORD_CLOUD_HEIGHT,
) -> alt.Chart:
    """The words of one member (dataset ``words``, rows of :func:`word_rows`).

    Vega-Lite has no word-cloud layout, so this is a scatter of text marks whose positions
    and font sizes are computed in Python by :func:`word_rows` (deterministic: the same text
    always gives the same picture) and used as pixels as they are (``scale: null``), with no
    axes. ``member`` filters the dataset to that member's rows; ``None`` shows every row
    (for a dataset that holds one layout only). ``width`` and ``height`` must match the
    canvas :func:`word_rows` laid the words out on."""
    base = alt.Chart(_named(WORDS))
    if member is not None:
        base = base.transform_filter(alt.FieldEqualPredicate(field="member", equal=member))
    chart = (
        base.mark_text(align="center", baseline="middle")
        .encode(
            x=alt.X("x:Q", scale=None, axis=None),
            y=alt.Y("y:Q", scale=None, axis=None),
            size=alt.Size("size:Q", scale=None, legend=None),
            text=alt.Text("word:N"),
            # Shade by font size, whose range is fixed: no domain to compute from the rows.
            color=alt.Color(
                "size:Q",
                scale=alt.Scale(
                    domain=[WORD_CLOUD_MIN_FONT, WORD_CLOUD_MAX_FONT],
                    range=["#7ea6c8", "#1d4a73"],
                    clamp=True,
                ),
                legend=None,
            ),
            tooltip=[alt.Tooltip("word:N", title="word"), alt.Tooltip("count:Q", title="count")],
        )
        .properties(width=width, height=height, view=alt.ViewBackground(stroke=None))
    )
    return chart.properties(title=title if title is not None else (member or "Words"))


# -- row builders ------------------------------------------------------------------------------


def _member_order(result: RunResult) -> dict[str, int]:
    return {model: i for i, model in enumerate(result.models_used)}


def _sorted_members(result: RunResult, members: Sequence[MemberResult]) -> list[MemberResult]:
    order = _member_order(result)
    return sorted(members, key=lambda m: (order.get(m.model, len(order)), m.model, m.instance))


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
        for m in _sorted_members(result, it.answers):
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
    """Rows of dataset ``consensus``: ``[{consensus}]``,
    the
    :func:`~consortium_lab.analysis.agreement.consensus` of the successful answers of the last
    iteration
    that has answers; ``[]`` when it is undefined (fewer than two non-empty answers)."""
    value = consensus(member_texts(_sorted_members(result, result.final_answers)))
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


def result_rows(result: RunResult, *, words_top: int = 40) -> dict[str, list[dict[str, Any]]]:
    """Every live dataset of ``result``: ``{name: rows}`` for :func:`with_data` or for a
    front end. ``words`` holds the final answers of the members and, under
    :data:`SYNTHESIS_KEY`, the synthesis."""
    texts = member_texts(_sorted_members(result, result.final_answers))
    if result.synthesis is not None:
        texts[SYNTHESIS_KEY] = result.synthesis.synthesis
    return {
        CONFIDENCE: confidence_rows(result),
        MEMBER_CONFIDENCE: member_confidence_rows(result),
        CONSENSUS: consensus_rows(result),
        WORDS: word_rows(texts, top=words_top),
    }


# -- usage dashboard ---------------------------------------------------------------------------


def _require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(missing)}")


def _answers(frame: pd.DataFrame) -> pd.DataFrame:
    """Member answers only (peer reviews left out) when the frame has a ``stage``."""
    if "stage" in frame.columns:
        return frame[frame["stage"] == "answer"]
    return frame


def _done(frame: pd.DataFrame) -> pd.DataFrame:
    if "status" in frame.columns:
        return frame[frame["status"] == "done"]
    return frame


def runs_over_time_chart(
    frame: pd.DataFrame, *, title: str = "Runs per day", width: Width | None = 360
) -> alt.Chart:
    """Runs started per day (UTC), stacked by run status. Needs ``run_id`` and
    ``run_started_at`` (datetimes or ISO strings); ``run_status`` is optional."""
    _require(frame, "run_id", "run_started_at")
    runs = frame.drop_duplicates("run_id")
    days = pd.to_datetime(runs["run_started_at"], utc=True, format="ISO8601").dt.strftime(
        "%Y-%m-%d"
    )
    statuses = (
        runs["run_status"].fillna("unknown").astype(str)
        if "run_status" in runs.columns
        else pd.Series("unknown", index=runs.index)
    )
    counts = (
        pd.DataFrame({"day": days, "status": statuses})
        .groupby(["day", "status"])
        .size()
        .reset_index(name="runs")
    )
    rows = [
        {"day": str(row["day"]), "status": str(row["status"]), "runs": int(row["runs"])}
        for row in counts.to_dict("records")
    ]
    chart = (
        alt.Chart(_inline(rows))
        .mark_bar()
        .encode(
            x=alt.X(
                "day:T",
                timeUnit="utcyearmonthdate",
                title="day",
                axis=alt.Axis(format="%b %d", tickCount={"interval": "day", "step": 1}),
            ),
            y=alt.Y("sum(runs):Q", title="runs", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("status:N", title="status"),
            tooltip=[
                alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day"),
                alt.Tooltip("status:N"),
                alt.Tooltip("runs:Q"),
            ],
        )
        .properties(title=title)
    )
    return _sized(chart, width, None)


def models_used_chart(
    frame: pd.DataFrame, *, title: str = "Answers per model", width: Width | None = 360
) -> alt.Chart:
    """Member answers per model (peer reviews left out), stacked by outcome (``done`` or
    ``failed``). Needs ``model``; ``stage`` and ``status`` are used when present."""
    _require(frame, "model")
    answers = _answers(frame)
    status = (
        answers["status"].fillna("unknown").astype(str)
        if "status" in answers.columns
        else pd.Series("done", index=answers.index)
    )
    counts = pd.DataFrame({"model": answers["model"].astype(str), "status": status})
    sizes = counts.groupby(["model", "status"]).size().reset_index(name="answers")
    rows = [
        {"model": str(row["model"]), "status": str(row["status"]), "answers": int(row["answers"])}
        for row in sizes.to_dict("records")
    ]
    chart = (
        alt.Chart(_inline(rows))
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title="model", sort="-x"),
            x=alt.X("sum(answers):Q", title="answers", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color(
                "status:N",
                title="outcome",
                scale=alt.Scale(domain=["done", "failed"], range=["#4c78a8", "#e45756"]),
            ),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("status:N"), alt.Tooltip("answers:Q")],
        )
        .properties(title=title)
    )
    return _sized(chart, width, None)


def confidence_by_model_chart(
    frame: pd.DataFrame, *, title: str = "Mean confidence per model", width: Width | None = 360
) -> alt.Chart:
    """The mean of each model's own stated confidence over its successful answers (answers
    with no stated confidence left out), on [0, 1], with the number of answers it averages in
    the tooltip. Needs ``model`` and ``confidence``."""
    _require(frame, "model", "confidence")
    answers = _done(_answers(frame))
    stated = pd.DataFrame(
        {
            "model": answers["model"].astype(str),
            "confidence": pd.to_numeric(answers["confidence"], errors="coerce"),
        }
    ).dropna()
    grouped = stated.groupby("model")["confidence"].agg(["mean", "count"])
    rows = [
        {"model": str(model), "mean_confidence": float(row["mean"]), "answers": int(row["count"])}
        for model, row in grouped.iterrows()
    ]
    chart = (
        alt.Chart(_inline(rows))
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title="model", sort="-x"),
            x=alt.X(
                "mean_confidence:Q",
                title="mean confidence",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("mean_confidence:Q", title="mean confidence", format=".0%"),
                alt.Tooltip("answers:Q"),
            ],
        )
        .properties(title=title)
    )
    return _sized(chart, width, None)


def latency_by_model_chart(
    frame: pd.DataFrame, *, title: str = "Latency per model", width: Width | None = 360
) -> alt.LayerChart:
    """Each model's call latency in seconds (every stage; calls without a latency left out),
    summarised in Python as a box plot: a rule from the fastest to the slowest call, a bar
    from the first to the third quartile and a tick at the median. Needs ``model`` and
    ``latency_ms``."""
    _require(frame, "model", "latency_ms")
    latency = pd.DataFrame(
        {
            "model": frame["model"].astype(str),
            "seconds": pd.to_numeric(frame["latency_ms"], errors="coerce") / 1000.0,
        }
    ).dropna()
    rows: list[dict[str, Any]] = []
    for model, group in latency.groupby("model"):
        seconds = group["seconds"]
        rows.append(
            {
                "model": str(model),
                "min": float(seconds.min()),
                "q1": float(seconds.quantile(0.25)),
                "median": float(seconds.median()),
                "q3": float(seconds.quantile(0.75)),
                "max": float(seconds.max()),
                "calls": int(seconds.count()),
            }
        )
    base = alt.Chart(_inline(rows)).encode(y=alt.Y("model:N", title="model"))
    tooltip = [
        alt.Tooltip("model:N"),
        alt.Tooltip("median:Q", title="median (s)", format=".2f"),
        alt.Tooltip("q1:Q", title="Q1 (s)", format=".2f"),
        alt.Tooltip("q3:Q", title="Q3 (s)", format=".2f"),
        alt.Tooltip("min:Q", title="fastest (s)", format=".2f"),
        alt.Tooltip("max:Q", title="slowest (s)", format=".2f"),
        alt.Tooltip("calls:Q"),
    ]
    whisker = base.mark_rule(color=MUTED).encode(
        x=alt.X("min:Q", title="latency (s)"), x2=alt.X2("max:Q"), tooltip=tooltip
    )
    box = base.mark_bar(size=14).encode(x=alt.X("q1:Q"), x2=alt.X2("q3:Q"), tooltip=tooltip)
    median = base.mark_tick(color="white", thickness=2, size=14).encode(
        x=alt.X("median:Q"), tooltip=tooltip
    )
    chart = alt.LayerChart(layer=[whisker, box, median]).properties(title=title)
    return _sized(chart, width, None)


def tokens_by_model_chart(
    frame: pd.DataFrame, *, title: str = "Tokens per model", width: Width | None = 360
) -> alt.Chart:
    """Total input and output tokens per model (every stage; calls whose provider reported no
    usage count as 0), stacked. Needs ``model``, ``input_tokens`` and ``output_tokens``."""
    _require(frame, "model", "input_tokens", "output_tokens")
    tokens = pd.DataFrame(
        {
            "model": frame["model"].astype(str),
            "input": pd.to_numeric(frame["input_tokens"], errors="coerce").fillna(0),
            "output": pd.to_numeric(frame["output_tokens"], errors="coerce").fillna(0),
        }
    )
    sums = tokens.groupby("model")[["input", "output"]].sum()
    rows = [
        {"model": str(model), "direction": direction, "tokens": int(row[direction])}
        for model, row in sums.iterrows()
        for direction in ("input", "output")
    ]
    chart = (
        alt.Chart(_inline(rows))
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title="model", sort="-x"),
            x=alt.X("sum(tokens):Q", title="tokens"),
            color=alt.Color("direction:N", title="tokens"),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("direction:N"), alt.Tooltip("tokens:Q")],
        )
        .properties(title=title)
    )
    return _sized(chart, width, None)


def usage_dashboard(frame: pd.DataFrame) -> alt.VConcatChart:
    """The five usage charts of a :func:`consortium_lab.runs.to_pandas` frame in one spec:
    runs over time and answers per model, mean confidence and latency per model, tokens per
    model. Note that the frame holds member calls only: arbiter calls are not in it."""
    # Each chart colours by its own field (status, outcome, direction): the colour scales must
    # be independent at every level of nesting, or one chart's domain blanks another's marks.
    return alt.vconcat(
        alt.hconcat(runs_over_time_chart(frame), models_used_chart(frame)).resolve_scale(
            color="independent"
        ),
        alt.hconcat(confidence_by_model_chart(frame), latency_by_model_chart(frame)).resolve_scale(
            color="independent"
        ),
        tokens_by_model_chart(frame),
    ).resolve_scale(color="independent")
