"""``consortium-lab eval``: evaluate conditions on a dataset, and list, show and compare
evaluations recorded in the run log.

``consortium-lab eval DATASET ...`` is ``consortium-lab eval run DATASET ...`` (the group
reads an argument that is not one of its commands as a dataset). ``--json`` prints one JSON
object, :class:`~consortium_lab.eval.report.EvalReport` (``conditions`` and ``items``);
without it a progress line (answers done per condition, ETA) and a table go to the terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from consortium_lab.config.catalog import UnknownModelError

__all__ = ["eval_cmd"]


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class _EvalGroup(click.Group):
    """A group whose first argument, when it is no command name, is ``run``'s DATASET."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


_DB = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CONSORTIUM_LAB_DB",
    help="The run log file (default: your data folder's runs.db).",
)


@click.group("eval", cls=_EvalGroup)
def eval_cmd() -> None:
    """Does the consortium beat your best single model, and at what cost? Evaluate
    conditions on your own questions: `consortium-lab eval DATASET -m A -m B --arbiter C`."""


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _table(report: Any) -> str:
    lines = [
        f"{'condition':<28} {'correct':>9} {'accuracy':>8} {'95% interval':>15}"
        f" {'mean s':>7} {'p95 s':>7} {'tokens':>8} {'cost':>9}"
    ]
    for c in report.conditions:
        lines.append(
            f"{c.name[:28]:<28} {f'{c.correct}/{c.n}':>9} {c.accuracy:>8.1%}"
            f" {f'{c.ci_low:.0%}-{c.ci_high:.0%}':>15} {_num(c.latency_mean, '.2f'):>7}"
            f" {_num(c.latency_p95, '.2f'):>7} {c.tokens:>8} {_num(c.cost, '.4f'):>9}"
        )
    return "\n".join(lines)


def _echo_report(report: Any, as_json: bool, html: Path | None) -> None:
    if html is not None:
        try:
            from consortium_lab.apps.eval_html import write_html
        except ImportError as exc:
            _fail(f"--html needs the 'widget' extra ({exc.name} is missing)")
        try:
            write_html(report, html)
        except FileNotFoundError as exc:
            _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    click.echo(_table(report))
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(
        f"(evaluation {report.id}, {report.status}; its runs: runs list --tag {report.tag})",
        err=True,
    )
    if html is not None:
        click.echo(f"Report written to {html}", err=True)


class _ProgressLine:
    """Answers done per condition and the ETA on standard error: rewritten in place on a
    terminal, else one line at every tenth of the work."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.printed_tenth = -1

    def __call__(self, state: Any) -> None:
        if self.tty:
            click.echo(f"\r{state.line()}\x1b[K", err=True, nl=False)
            if state.finished == state.total:
                click.echo("", err=True)
            return
        tenth = state.finished * 10 // max(state.total, 1)
        if tenth != self.printed_tenth:
            self.printed_tenth = tenth
            click.echo(state.line(), err=True)


@eval_cmd.command("run")
@click.argument("dataset", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", "models", multiple=True, help="Member model, repeatable.")
@click.option("--arbiter", help="Arbiter of consortium/council (default: the first member).")
@click.option(
    "--modes",
    default="members,consortium",
    show_default=True,
    help="Comma-separated conditions: members, vote, consortium, council, or saved config names.",
)
@click.option(
    "--scorer",
    type=click.Choice(["exact", "numeric", "choice", "contains", "regex", "judge"]),
    default="exact",
    show_default=True,
    help="How an answer is checked against the reference.",
)
@click.option("--tolerance", type=float, help="numeric scorer: largest accepted difference.")
@click.option("--pattern", help="regex scorer: the pattern whose first group is the answer.")
@click.option("--judge", "judge_model", help="judge scorer: the model that grades.")
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Distinct samples per item and condition.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Runs in flight at once.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items.")
@click.option("--skip-bad", is_flag=True, help="Skip bad dataset rows (and say how many).")
@click.option(
    "--cache",
    type=click.Choice(["use", "bypass", "refresh"]),
    help="Cache mode (default: bypass when --samples > 1, else use).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap intervals."
)
@click.option("--resume", "resume_id", help="Continue the interrupted evaluation with this id.")
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table and charts to this HTML file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the report).")
@_DB
def eval_run(
    dataset: Path,
    models: tuple[str, ...],
    arbiter: str | None,
    modes: str,
    scorer: str,
    tolerance: float | None,
    pattern: str | None,
    judge_model: str | None,
    samples: int,
    concurrency: int,
    limit: int | None,
    skip_bad: bool,
    cache: str | None,
    seed: int,
    resume_id: str | None,
    html: Path | None,
    as_json: bool,
    db: Path | None,
) -> None:
    """Ask every item of DATASET (.jsonl or .csv: id, prompt, answer[, choices, metadata])
    under each condition of --modes, score the answers and report accuracy, intervals,
    latency, tokens and cost per condition."""
    from pydantic import ValidationError

    from consortium_lab.eval.dataset import DatasetError, load_dataset
    from consortium_lab.eval.runner import evaluate

    try:
        data = load_dataset(dataset, skip_bad=skip_bad)
    except DatasetError as exc:
        _fail(str(exc))
    if data.skipped:
        click.echo(f"Skipped {len(data.skipped)} bad row(s):", err=True)
        for row in data.skipped:
            click.echo(f"  {row}", err=True)

    def started(eval_id: str) -> None:
        click.echo(
            f"Evaluation {eval_id}: {len(data.limit(limit))} item(s); if it stops, resume with"
            f" --resume {eval_id}",
            err=True,
        )

    options = {"tolerance": tolerance, "pattern": pattern, "model": judge_model}
    try:
        report = asyncio.run(
            evaluate(
                data,
                models=list(models),
                arbiter=arbiter,
                modes=modes.split(","),
                scorer=scorer,
                scorer_options={k: v for k, v in options.items() if v is not None},
                samples=samples,
                concurrency=concurrency,
                limit=limit,
                cache=cache,
                seed=seed,
                store=db,
                resume=resume_id,
                progress=None if as_json else _ProgressLine(),
                on_start=started,
            )
        )
    except KeyboardInterrupt:
        click.echo("\nInterrupted: what was scored is kept; resume with --resume.", err=True)
        sys.exit(130)
    except (KeyError, UnknownModelError) as exc:
        _fail(str(exc.args[0]) if exc.args else str(exc))
    except (ValidationError, ValueError) as exc:
        _fail(str(exc))
    _echo_report(report, as_json, html)


@eval_cmd.command("list")
@click.option("-n", "--limit", type=int, default=20, show_default=True, help="How many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_DB
def eval_list(limit: int, as_json: bool, db: Path | None) -> None:
    """List recorded evaluations, newest first."""
    from consortium_lab.eval.store import EvalStore

    with EvalStore(db) as store:
        rows = store.list_evaluations(limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("No evaluations yet.")
    for r in rows:
        total = r["items"] * r["samples"] * len(r["conditions"])
        click.echo(
            f"{r['id']}  {r['created_at'][:19]}  {r['status']:<11} {r['answered']}/{total}"
            f"  {r['scorer']}  {', '.join(r['conditions'])}  {r['dataset']}"
        )


@eval_cmd.command("show")
@click.argument("eval_id")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table and charts to this HTML file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (export).")
@_DB
def eval_show(eval_id: str, seed: int, html: Path | None, as_json: bool, db: Path | None) -> None:
    """Show (or export with --json) evaluation EVAL_ID (its id or tag)."""
    from consortium_lab.eval.store import EvalStore

    with EvalStore(db) as store:
        try:
            report = store.report(eval_id, seed=seed)
        except KeyError as exc:
            _fail(str(exc.args[0]))
    _echo_report(report, as_json, html)


@eval_cmd.command("compare")
@click.argument("eval_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_DB
def eval_compare(eval_ids: tuple[str, ...], as_json: bool, db: Path | None) -> None:
    """Compare evaluations side by side: each condition's accuracy and interval in each."""
    from consortium_lab.eval.store import EvalStore

    with EvalStore(db) as store:
        try:
            reports = [store.report(e) for e in eval_ids]
        except KeyError as exc:
            _fail(str(exc.args[0]))
    names: list[str] = []
    for report in reports:
        names += [c.name for c in report.conditions if c.name not in names]
    table: list[dict[str, Any]] = []
    for name in names:
        cells: dict[str, Any] = {}
        for report in reports:
            found = [c for c in report.conditions if c.name == name]
            cells[report.id] = found[0].model_dump() if found else None
        table.append({"condition": name, "evaluations": cells})
    if as_json:
        click.echo(
            json.dumps(
                {
                    "evaluations": [
                        {"id": r.id, "dataset": r.dataset, "scorer": r.scorer, "status": r.status}
                        for r in reports
                    ],
                    "conditions": table,
                },
                indent=2,
            )
        )
        return
    click.echo(f"{'condition':<28}" + "".join(f" {r.id:>24}" for r in reports))
    for row in table:
        texts = [
            "-" if c is None else f"{c['accuracy']:.1%} ({c['ci_low']:.0%}-{c['ci_high']:.0%})"
            for c in row["evaluations"].values()
        ]
        click.echo(f"{row['condition'][:28]:<28}" + "".join(f" {t:>24}" for t in texts))
