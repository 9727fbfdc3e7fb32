"""The HTML page of an evaluation (``consortium-lab eval ... --html REPORT``): the totals
table, the notes and the three charts of :mod:`consortium_lab.eval.charts`, in one file that
works offline.

The charts are drawn by the package's own chart bundle (``static/chart.js``, the bundled
vega-embed the widget's ``VegaChart`` uses), embedded in the page and loaded as a module from a
``blob:`` URL, so opening the file needs no network and no CDN.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from consortium_lab.eval.charts import report_charts
from consortium_lab.eval.report import EvalReport
from consortium_lab.widget.vega import STATIC

__all__ = ["write_html"]

_LOADER = """
const code = document.getElementById("cl-chart-module").textContent;
const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
const chart = (await import(url)).default;
const spec = JSON.parse(document.getElementById("cl-spec").textContent);
const model = { get: (name) => (name === "spec" ? spec : undefined), on: () => {} };
chart.render({ model, el: document.getElementById("charts") });
"""


def _raw(text: str) -> str:
    """``text`` safe as the raw content of a ``<script>``: only ``</script`` could end it
    early; ``<\\/`` reads the same inside the strings and patterns where it can occur."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _table(report: EvalReport) -> str:
    heads = ("condition", "correct", "n", "accuracy", "95% interval", "mean s", "p95 s")
    head = "".join(f"<th>{h}</th>" for h in (*heads, "tokens", "cost"))
    body = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.correct}</td><td>{c.n}</td>"
        f"<td>{c.accuracy:.1%}</td><td>{c.ci_low:.1%} to {c.ci_high:.1%}</td>"
        f"<td>{_num(c.latency_mean, '.2f')}</td><td>{_num(c.latency_p95, '.2f')}</td>"
        f"<td>{c.tokens}</td><td>{_num(c.cost, '.4f')}</td></tr>"
        for c in report.conditions
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(report: EvalReport, path: str | Path) -> Path:
    """Write the evaluation's page to ``path``. Raises ``FileNotFoundError`` naming the fix
    when the chart bundle was never built."""
    bundle = STATIC / "chart.js"
    if not bundle.is_file():
        raise FileNotFoundError(
            f"the chart bundle {bundle} is missing: run `npm ci && npm run build` in widgets/"
            " (pip install does it through the build hook)"
        )
    css = STATIC / "chart.css"
    spec = json.dumps(report_charts(report).to_dict())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Evaluation {html.escape(report.id)}</title>
<style>{css.read_text(encoding="utf-8") if css.is_file() else ""}</style>
<style>body{{font-family:sans-serif;margin:1.5em}} td,th{{padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>Evaluation {html.escape(report.id)}</h1>
<p>{html.escape(report.dataset)}, scorer {html.escape(report.scorer)}, {report.samples}
sample(s), status {html.escape(report.status)}, tag <code>{html.escape(report.tag)}</code></p>
{_table(report)}<ul>{notes}</ul><div id="charts"></div>
<script type="application/json" id="cl-spec">{_raw(spec)}</script>
<script type="text/plain" id="cl-chart-module">{_raw(bundle.read_text(encoding="utf-8"))}</script>
<script type="module">{_LOADER}</script>
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
