"""``consortium-lab purge``: delete old runs from the run log, for good (see docs/run-log.md).

Exactly one of ``--older-than DAYS``, ``--all`` or ``--retention`` (the days of
``CONSORTIUM_LAB_RETENTION_DAYS``, doing nothing when it is unset or no run log exists yet, so
a user server can run it at every start) says what goes. ``--all-homes`` applies it to every
home's run log under ``--home-base`` (root, on one machine: dormant users' runs too). Bad input
is one line and exit 1, with nothing deleted.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["purge_cmd"]


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.1f} kB"


@click.command("purge")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CONSORTIUM_LAB_DB",
    help="The run log file (default: your data folder's runs.db).",
)
@click.option(
    "--older-than",
    "older_than",
    metavar="DAYS",
    help="Delete the runs that started more than DAYS days ago (a whole number, at least 1).",
)
@click.option("--all", "everything", is_flag=True, help="Delete every finished run.")
@click.option(
    "--retention",
    is_flag=True,
    help="Delete the runs older than CONSORTIUM_LAB_RETENTION_DAYS or the days you chose in "
    "the chat, the smaller (nothing when neither is set).",
)
@click.option(
    "--all-homes",
    is_flag=True,
    help="Every home's run log under --home-base (~/.local/share/consortium-lab/runs.db, as the "
    "hub's user servers keep it), each with its own llm log; run as root. Not with --db.",
)
@click.option(
    "--home-base",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/home"),
    show_default=True,
    help="The folder of homes --all-homes looks in (the hub's CONSORTIUM_HUB_HOME_BASE).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
@click.option(
    "--keep-llm-log",
    is_flag=True,
    help="Leave llm's logs.db alone (by default the purged runs' responses go from it too).",
)
def purge_cmd(
    db: Path | None,
    older_than: str | None,
    everything: bool,
    retention: bool,
    all_homes: bool,
    home_base: Path,
    dry_run: bool,
    keep_llm_log: bool,
) -> None:
    """Delete runs from your run log, with their rows in llm's log, and vacuum both files.

    Runs still running are kept. Deleted text is gone from the files, not only hidden.
    """
    from consortium_lab import paths, runs
    from consortium_lab.sinks.runlog import (
        chosen_retention_days,
        effective_retention_days,
        parse_days,
    )

    chosen = sum((older_than is not None, everything, retention))
    if chosen != 1:
        raise click.ClickException("give exactly one of --older-than DAYS, --all, --retention")
    days: int | None = None
    try:
        if older_than is not None:
            days = parse_days(older_than, what="--older-than")
        if all_homes:
            if db is not None:
                raise ValueError("--all-homes purges every home's run log: leave out --db")
            _all_homes(home_base, days, everything, retention, dry_run, not keep_llm_log)
            return
        path = db if db is not None else paths.runs_db_path()
        if retention:
            days = effective_retention_days(chosen_retention_days())
            if days is None:
                click.echo("No retention set (CONSORTIUM_LAB_RETENTION_DAYS); nothing purged.")
                return
            if not path.exists():
                # A user server's first start: no run yet, so nothing is due.
                click.echo(f"No run log at {path} yet; nothing purged.")
                return
        report = runs.purge(
            days,
            all=everything,
            dry_run=dry_run,
            path=path,
            llm_log=not keep_llm_log,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "Would delete" if report.dry_run else "Deleted"
    click.echo(
        f"{verb} {report.runs} runs, {report.conversations} conversations and"
        f" {report.llm_responses} llm log responses from {report.path}"
    )
    if not report.dry_run and report.runs:
        click.echo(f"File size {_size(report.bytes_before)} -> {_size(report.bytes_after)}")


def _all_homes(
    base: Path, days: int | None, everything: bool, retention: bool, dry_run: bool, llm: bool
) -> None:
    from consortium_lab.apps.retention import purge_homes

    results = purge_homes(
        base, days, everything=everything, retention=retention, dry_run=dry_run, llm_log=llm
    )
    verb = "would delete" if dry_run else "deleted"
    for result in results:
        if result.report is not None:
            report = result.report
            click.echo(
                f"{result.home}: {verb} {report.runs} runs,"
                f" {report.llm_responses} llm log responses"
            )
        elif result.error is not None:
            click.echo(f"{result.home}: failed: {result.error}", err=True)
        else:
            click.echo(f"{result.home}: no retention set; nothing purged")
    failed = sum(r.error is not None for r in results)
    click.echo(f"{len(results)} run logs under {base}, {failed} failed")
    if failed:
        raise SystemExit(1)
