"""The evaluation's HTML page (``--html REPORT``) draws its charts in Chromium offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consortium_lab.apps.eval_html import write_html
from consortium_lab.eval.report import ConditionResult, EvalReport


def _condition(name: str, correct: int, cost: float, latency: float) -> ConditionResult:
    return ConditionResult(
        name=name, correct=correct, n=10, accuracy=correct / 10, ci_low=max(0, correct - 3) / 10,
        ci_high=min(10, correct + 3) / 10, latency_mean=latency, latency_p95=latency * 2,
        tokens=100 * correct, cost=cost,
    )  # fmt: skip


def test_the_report_page_draws_three_charts_without_the_network(page: Any, tmp_path: Path) -> None:
    report = EvalReport(
        id="abc123",
        tag="eval-abc123",
        dataset="items.jsonl",
        scorer="numeric",
        status="completed",
        notes=["a note </script><b>not bold</b>"],
        conditions=[
            _condition("member:a", 5, 0.01, 1.0),
            _condition("member:b", 7, 0.02, 2.0),
            _condition("consortium", 9, 0.05, 4.0),
        ],
    )
    path = write_html(report, tmp_path / "report.html")
    page.goto(path.as_uri())
    page.wait_for_selector(".cl-static-chart[data-embedded='true']")
    titles = page.locator("#charts svg text, #charts canvas").count()
    assert titles > 0
    text = page.locator("body").inner_text()
    assert "consortium" in text and "90.0%" in text and "not bold" in text
    assert page.locator("b").count() == 0  # the note is text, not markup
    svg_text = page.evaluate(
        "() => Array.from(document.querySelectorAll('#charts svg text'))"
        ".map(t => t.textContent).join(' ')"
    )
    assert "Accuracy per condition" in svg_text and "Pareto front" in svg_text
    assert [u for u in page.outside if not u.startswith("file:")] == []
    assert page.errors == []
