"""Vega-Lite chart specs of a run, built with Altair.

This module builds chart *specs* only: no HTML, no rendering, no I/O. The chat widget embeds
them with vega-embed; a notebook displays them as Altair charts. (Needs ``altair``, part of
the ``widget`` extra.)

Live charts and named datasets
    The charts of a run read their rows from *named* datasets (``{"data": {"name": ...}}``)
    and carry no rows themselves, so a front end embeds a spec once and then streams rows in
    with Vega changesets instead of re-embedding::

        view.change("confidence", vega.changeset().insert(rows))

    The datasets and their rows are listed in :mod:`consortium_lab.analysis.rows`, which
    builds them (:func:`~consortium_lab.analysis.rows.result_rows` for all four);
    :func:`with_data` inlines rows into a spec (as top-level ``datasets``, so the names keep
    working) for a notebook or a static export. The usage-dashboard charts are in
    :mod:`consortium_lab.analysis.dashboard`.

Self-contained
    Specs reference no URL, CDN, font or remote data (the ``$schema`` key aside), and set no
    embed options (``actions`` and the like are for the front end to choose). Inline data is
    always given as ``alt.Data(values=...)`` built here, so ``alt.data_transformers`` (whose
    settings this module never changes) do not apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt

from consortium_lab.analysis.rows import (
    CONFIDENCE,
    CONSENSUS,
    MEMBER_CONFIDENCE,
    WORD_CLOUD_HEIGHT,
    WORD_CLOUD_MAX_FONT,
    WORD_CLOUD_MIN_FONT,
    WORD_CLOUD_WIDTH,
    WORDS,
)
from consortium_lab.analysis.theme import (
    MUTED,
    UNKNOWN_FILL,
    UNKNOWN_STROKE,
    ChartT,
    Width,
    inline,
    named,
    sized,
)

__all__ = [
    "CONFIDENCE",
    "CONSENSUS",
    "MEMBER_CONFIDENCE",
    "WORDS",
    "confidence_chart",
    "consensus_meter",
    "member_confidence_chart",
    "spec",
    "with_data",
    "word_cloud",
]


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
        alt.Chart(named(CONFIDENCE))
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
    marker = inline([{"threshold": threshold, "label": f"threshold {threshold:.0%}"}])
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
    return sized(chart, width, height)


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
    base = alt.Chart(named(MEMBER_CONFIDENCE)).transform_calculate(
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
    return sized(chart, width, height)


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
        alt.Chart(inline([{"start": 0.0, "end": 1.0}]))
        .mark_bar(color="#eeeeee")
        .encode(
            x=alt.X("start:Q", scale=scale, title=None, axis=alt.Axis(format="%", tickCount=5)),
            x2=alt.X2("end:Q"),
        )
    )
    bar = (
        alt.Chart(named(CONSENSUS))
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
        alt.Chart(named(CONSENSUS))
        .mark_text(x="width", align="right", baseline="middle", dx=-4, fontWeight="bold")
        .encode(text=alt.Text("consensus:Q", format=".0%"))
    )
    chart = alt.LayerChart(layer=[track, bar, label]).properties(title=title)
    return sized(chart, width, height)


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
    base = alt.Chart(named(WORDS))
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
