"""Charts of an evaluation (Altair, the ``widget`` extra): accuracy with its 95% interval per
condition, and accuracy against cost and against latency with the Pareto front marked.

Like the other chart specs of the package they embed their few rows inline. The HTML page of
``--html REPORT`` is assembled in :mod:`consortium_lab.apps.eval_html`, beside the bundle that
renders it.
"""

from __future__ import annotations

from typing import Any

import altair as alt

from consortium_lab.analysis.theme import MUTED, inline
from consortium_lab.eval.report import EvalReport
from consortium_lab.eval.stats import pareto_front

__all__ = ["accuracy_chart", "report_charts", "tradeoff_chart"]


def accuracy_chart(report: EvalReport, *, width: float = 360) -> alt.LayerChart:
    """One row per condition: accuracy as a point, its 95% bootstrap interval as a rule."""
    rows = [
        {
            "condition": c.name,
            "accuracy": c.accuracy,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "label": f"{c.correct}/{c.n}",
        }
        for c in report.conditions
    ]
    base = alt.Chart(inline(rows)).encode(
        y=alt.Y("condition:N", sort=None, title=None),
    )
    rule = base.mark_rule(color=MUTED, strokeWidth=2).encode(
        x=alt.X("ci_low:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy (95% interval)"),
        x2="ci_high:Q",
    )
    point = base.mark_point(filled=True, size=80).encode(
        x="accuracy:Q",
        tooltip=[
            "condition:N",
            alt.Tooltip("accuracy:Q", format=".1%"),
            "label:N",
            alt.Tooltip("ci_low:Q", format=".1%"),
            alt.Tooltip("ci_high:Q", format=".1%"),
        ],
    )
    return (rule + point).properties(width=width, title="Accuracy per condition")


def tradeoff_chart(report: EvalReport, by: str = "cost", *, width: float = 360) -> alt.LayerChart:
    """Accuracy against total cost (``by="cost"``) or mean latency (``by="latency"``); the
    Pareto front's points are filled and joined by a line."""
    front = {c.name for c in pareto_front(report.conditions, by)}
    field = "cost" if by == "cost" else "latency_mean"
    title = "total cost" if by == "cost" else "mean latency (s)"
    rows: list[dict[str, Any]] = [
        {
            "condition": c.name,
            "accuracy": c.accuracy,
            "x": getattr(c, field),
            "front": c.name in front,
        }
        for c in report.conditions
        if getattr(c, field) is not None
    ]
    base = alt.Chart(inline(rows)).encode(
        x=alt.X("x:Q", title=title),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy"),
    )
    points = base.mark_point(size=80).encode(
        fill=alt.condition("datum.front", alt.value("#1f77b4"), alt.value("white")),
        tooltip=["condition:N", alt.Tooltip("accuracy:Q", format=".1%"), "x:Q", "front:N"],
    )
    labels = base.mark_text(align="left", dx=7).encode(text="condition:N")
    line = (
        alt.Chart(inline(sorted((r for r in rows if r["front"]), key=lambda r: r["x"])))
        .mark_line(strokeDash=[4, 3])
        .encode(x="x:Q", y="accuracy:Q", order="x:Q")
    )
    name = "cost" if by == "cost" else "latency"
    return (line + points + labels).properties(
        width=width, title=f"Accuracy against {name} (filled: Pareto front)"
    )


def report_charts(report: EvalReport) -> alt.VConcatChart:
    """The three charts, one above the other."""
    return alt.vconcat(
        accuracy_chart(report), tradeoff_chart(report, "cost"), tradeoff_chart(report, "latency")
    )
