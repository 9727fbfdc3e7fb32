"""``consortium-lab recommend``: which models to use, from an evaluation and your run log.

See :func:`consortium_lab.recommender.advice.recommend` for what is computed; ``--json``
prints the :class:`~consortium_lab.recommender.advice.Recommendation` as one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from consortium_lab.recommender.advice import Recommendation, recommend
from consortium_lab.recommender.topics import DEFAULT_MIN_RUNS

__all__ = ["recommend_cmd"]


def _read_evaluation(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{file}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); expected"
            " the output of 'consortium-lab eval --json' or a list of conditions"
        ) from None


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _print(advice: Recommendation) -> None:
    ev = advice.evaluation
    if ev is not None:
        click.echo(ev.summary)
        click.echo(f"  within {ev.margin:.1%} of the best: {', '.join(ev.within_margin)}")
        for title, front in (("cost", ev.pareto_cost), ("latency", ev.pareto_latency)):
            points = ", ".join(
                f"{c.name} ({c.accuracy:.1%}, "
                + (
                    f"cost {_num(c.cost, '.4g')})"
                    if title == "cost"
                    else f"{_num(c.latency_mean, '.2f')} s)"
                )
                for c in front
            )
            click.echo(f"  Pareto front, accuracy vs {title}: {points or '-'}")
    if advice.run_log is not None:
        click.echo(f"Run log {advice.run_log}: {advice.runs} finished runs.")
    if advice.models:
        click.echo(
            f"  {'model':<28} {'runs':>5} {'agree':>6} {'fail':>6} {'mean ms':>8} {'p95 ms':>8}"
            f" {'cost/call':>10}"
        )
    for s in advice.models:
        click.echo(
            f"  {s.model:<28} {s.runs:>5} {_num(s.agreement_rate, '.0%'):>6}"
            f" {s.failure_rate:>6.0%} {_num(s.latency_mean_ms, '.0f'):>8}"
            f" {_num(s.latency_p95_ms, '.0f'):>8} {_num(s.cost_mean, '.4g'):>10}"
        )
    if advice.for_prompt is not None:
        click.echo(advice.for_prompt.message)


@click.command("recommend")
@click.argument("prompt", required=False)
@click.option(
    "--eval",
    "evaluation",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An evaluation's JSON ('consortium-lab eval --json' output, or a list of conditions).",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="Accuracy the choice may give up against the best (0.02 = two points).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CONSORTIUM_LAB_DB",
    help="The run log file (default: your data folder's runs.db).",
)
@click.option("--no-history", is_flag=True, help="Do not read the run log.")
@click.option(
    "--min-runs",
    type=click.IntRange(1),
    default=DEFAULT_MIN_RUNS,
    show_default=True,
    help="Fewer similar past runs than this: say there is not enough history.",
)
@click.option("--size", type=click.IntRange(1), help="How many members to suggest.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def recommend_cmd(
    prompt: str | None,
    evaluation: Path | None,
    margin: float,
    db: Path | None,
    no_history: bool,
    min_runs: int,
    size: int | None,
    as_json: bool,
) -> None:
    """Recommend models: from an evaluation (--eval) and, for PROMPT, from similar past runs."""
    if no_history and prompt is not None:
        raise click.UsageError("a PROMPT is matched against the run log: drop --no-history")
    try:
        advice = recommend(
            prompt,
            evaluation=_read_evaluation(evaluation) if evaluation is not None else None,
            margin=margin,
            path=db,
            history=not no_history,
            min_runs=min_runs,
            size=size,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(advice.model_dump_json(indent=2))
    else:
        _print(advice)
