"""Charts of a gateway's usage (Altair, the ``widget`` extra), from the rows of its admin API
(``GET /admin/usage?group_by=KEY``): calls by outcome, then by user, model and day the calls
and errors, mean latency, cache hit rate, tokens and cost.

The rows are embedded in the spec as they came, plus the two figures derived here (cache hit
rate, total tokens), so a chart shows exactly the gateway's numbers. The admin analytics
service (:mod:`consortium_lab.apps.analytics`) renders them with the package's bundled vega.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt

from consortium_lab.analysis.theme import MUTED, inline

__all__ = ["GROUPS", "MEASURES", "group_chart", "outcome_chart", "usage_charts", "usage_rows"]

GROUPS = ("user", "model", "day")
"""The keys charted measure by measure, in page order."""

MEASURES = (
    ("calls", "calls"),
    ("failed", "errors"),
    ("latency_ms_avg", "mean latency (ms)"),
    ("cache_hit_rate", "cache hit rate"),
    ("tokens", "tokens"),
    ("cost", "cost"),
)
"""(field, axis title) of each chart of a group, in row order."""


def usage_rows(rows: Sequence[Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    """``rows`` with ``key`` as text (``None`` shows as ``-``), ``tokens`` (input + output)
    and ``cache_hit_rate`` (cached / calls; ``None`` without calls) added."""
    out = []
    for row in rows:
        calls = row.get("calls") or 0
        out.append(
            {
                **row,
                key: "-" if row.get(key) is None else str(row[key]),
                "tokens": (row.get("input_tokens") or 0) + (row.get("output_tokens") or 0),
                "cache_hit_rate": (row.get("cached") or 0) / calls if calls else None,
            }
        )
    return out


def outcome_chart(rows: Sequence[Mapping[str, Any]], *, width: float = 320) -> alt.Chart:
    """Calls per outcome (``ok`` in the default colour, every error outcome muted)."""
    data = usage_rows(rows, "outcome")
    return (
        alt.Chart(inline(data))
        .mark_bar()
        .encode(
            y=alt.Y("outcome:N", sort="-x", title=None),
            x=alt.X("calls:Q", title="calls"),
            color=alt.condition(alt.datum.outcome == "ok", alt.value("#4c78a8"), alt.value(MUTED)),
            tooltip=["outcome:N", "calls:Q"],
        )
        .properties(width=width, title="Calls by outcome")
    )


def group_chart(
    rows: Sequence[Mapping[str, Any]], key: str, *, width: float = 160
) -> alt.HConcatChart:
    """One bar chart per measure of :data:`MEASURES`, a bar per ``key`` value (days in date
    order, others as the gateway sorted them)."""
    data = inline(usage_rows(rows, key))
    y = alt.Y(f"{key}:N", sort=None, title=key)
    charts = []
    for field, title in MEASURES:
        fmt = ".0%" if field == "cache_hit_rate" else (",.4f" if field == "cost" else ",.0f")
        charts.append(
            alt.Chart(data)
            .mark_bar()
            .encode(
                y=y,
                x=alt.X(f"{field}:Q", title=title, axis=alt.Axis(format=fmt)),
                tooltip=[f"{key}:N", alt.Tooltip(f"{field}:Q", format=fmt)],
            )
            .properties(width=width)
        )
    return alt.hconcat(*charts).properties(title=f"By {key}")


def usage_charts(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> alt.VConcatChart:
    """The page's charts: ``tables["outcome"]`` by outcome, then each of :data:`GROUPS` in
    ``tables`` measure by measure.

    Raises:
        KeyError: ``tables`` has no ``outcome`` rows.
    """
    charts: list[Any] = [outcome_chart(tables["outcome"])]
    charts += [group_chart(tables[key], key) for key in GROUPS if key in tables]
    return alt.vconcat(*charts)
