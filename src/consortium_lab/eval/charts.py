"""Charts of an evaluation (Altair, the ``widget`` extra): accuracy with its 95% interval per
condition, and accuracy against cost and against latency with the Pareto front marked.

Like the other chart specs of the package they embed their few rows inline. :func:`write_html`
writes the three charts and the totals table to one HTML page (``--html REPORT``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import altair as alt

from consortium_lab.analysis.theme import MUTED, inline
from consortium_lab.eval.report import EvalReport
from consortium_lab.eval.stats import pareto_front

__all__ = ["accuracy_chart", "report_charts", "tradeoff_chart", "write_html"]


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
    front = set(pareto_front(report.conditions, by))
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


def _table(report: EvalReport) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "condition",
            "correct",
            "n",
            "accuracy",
            "95% interval",
            "mean s",
            "p95 s",
            "tokens",
            "cost",
        )
    )

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    body = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.correct}</td><td>{c.n}</td>"
        f"<td>{c.accuracy:.1%}</td><td>{c.ci_low:.1%} to {c.ci_high:.1%}</td>"
        f"<td>{num(c.latency_mean, '.2f')}</td><td>{num(c.latency_p95, '.2f')}</td>"
        f"<td>{c.tokens}</td><td>{num(c.cost, '.4f')}</td></tr>"
        for c in report.conditions
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(report: EvalReport, path: str | Path) -> Path:
    """Write the evaluation's table and charts to ``path`` as one HTML page (Vega is loaded
    from its CDN when the page is opened)."""
    path = Path(path)
    # Raw text inside <script>: only "</" could end it early, and JSON reads "<\\/" as "</".
    spec = json.dumps(report_charts(report).to_dict()).replace("</", "<\\/")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Evaluation {html.escape(report.id)}</title>
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-embed@6"></script>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head>
<body><h1>Evaluation {html.escape(report.id)}</h1>
<p>{html.escape(report.dataset)}, scorer {html.escape(report.scorer)}, {report.samples}
sample(s), status {report.status}, tag <code>{html.escape(report.tag)}</code></p>
{_table(report)}<ul>{notes}</ul><div id="charts"></div>
<script type="application/json" id="spec">{spec}</script>
<script>vegaEmbed("#charts", JSON.parse(document.getElementById("spec").textContent));</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
