"""The ``consortium-lab`` command line: run, demo, configs, runs, models, gateway, eval, recommend.

Every command works on a fresh home folder. Help texts here (and in
:mod:`~consortium_lab.apps.cli_gateway` for ``gateway``) are the reference; ``docs/cli.md``
shows examples.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from consortium_lab.apps.cli_audit import audit_cmd
from consortium_lab.apps.cli_eval import eval_cmd
from consortium_lab.apps.cli_gateway import gateway_cmd
from consortium_lab.apps.cli_purge import purge_cmd
from consortium_lab.apps.cli_recommend import recommend_cmd
from consortium_lab.apps.hub import hub_command
from consortium_lab.config.catalog import UnknownModelError
from consortium_lab.config.consortium import MODES

DEMO_MEMBERS = ("demo-analyst", "demo-optimist", "demo-skeptic")
DEMO_ARBITER = "demo-arbiter"
DEMO_PROMPT = "What are the main trade-offs of renewable energy storage today?"


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _message(exc: BaseException) -> str:
    """An exception's own message (``str(KeyError)`` would add quotes around it)."""
    return str(exc.args[0]) if exc.args else str(exc)


@click.group()
@click.version_option(package_name="consortium-lab")
def main() -> None:
    """Ask several language models at once and get one synthesized answer."""


def _config_options(func: Any) -> Any:
    options = [
        click.option(
            "-m",
            "--model",
            "models",
            multiple=True,
            help="Member model, repeatable; 'model:N' for N instances.",
        ),
        click.option("--arbiter", help="Model that synthesizes (default: the first member)."),
        click.option(
            "--threshold",
            "confidence_threshold",
            type=float,
            help="Stop once confidence reaches this (0-1, or 1-100 read as percent).",
        ),
        click.option("--max-iterations", type=int, help="Never run more iterations than this."),
        click.option(
            "--min-iterations",
            "minimum_iterations",
            type=int,
            help="Always run at least this many iterations.",
        ),
        click.option(
            "--mode",
            type=click.Choice(MODES),
            help="consortium (arbiter synthesis), council (peer ranking + chairman),"
            " compare (members only) or vote (the most frequent answer wins, no arbiter).",
        ),
        click.option(
            "--judging",
            "judging_method",
            type=click.Choice(["default", "rank"]),
            help="Arbiter synthesizes (default) or ranks and picks the best answer.",
        ),
        click.option("--system", "system_prompt", help="Instructions sent to every member."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in kwargs.items() if v not in (None, ())}
    if "models" in settings:
        settings["models"] = list(settings["models"])
    return settings


def _build(config_name: str | None, settings: dict[str, Any], **engine: Any) -> Any:
    from pydantic import ValidationError

    from consortium_lab import configs
    from consortium_lab.engine.consortium import Consortium

    try:
        base = configs.get(config_name) if config_name else None
        if base is None and "models" not in settings:
            _fail("give at least one --model, or --config NAME (see `consortium-lab configs list`)")
        return Consortium(base, **settings, **engine)
    except (KeyError, UnknownModelError) as exc:
        _fail(_message(exc))
    except (ValidationError, ValueError) as exc:
        _fail(f"invalid configuration: {exc}")


EXIT_WARNINGS = 3
"""Exit status of a run that completed with warnings (the arbiter's output could not be read);
0 completed, 1 failed, 2 usage error, 130 cancelled."""


def _run(consortium: Any, prompt: str, as_json: bool, cache: str = "use") -> None:
    from consortium_lab.sinks.printer import TerminalPrinter

    if not as_json:
        consortium.sinks.append(TerminalPrinter())
    try:
        result = asyncio.run(consortium.run(prompt, cache=cache))
    except KeyboardInterrupt:
        click.echo("\nCancelled.", err=True)
        sys.exit(130)
    if as_json:
        click.echo(result.to_json())
    else:
        click.echo("")
        click.echo(result.text)
        if result.synthesis is not None and not result.synthesis.parse_ok:
            click.echo(
                "\n⚠ The arbiter's output did not parse cleanly; shown as returned.", err=True
            )
        click.echo(f"\n(run {result.run_id})", err=True)
    if result.status == "failed":
        sys.exit(1)
    if result.status == "completed_with_warnings":
        if not as_json:
            for warning in result.warnings:
                click.echo(f"⚠ {warning}", err=True)
        sys.exit(EXIT_WARNINGS)


@main.command()
@click.argument("prompt", required=False)
@_config_options
@click.option("-c", "--config", "config_name", help="Start from a saved config.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON (the export format)."
)
@click.option("--no-log", is_flag=True, help="Do not write the run to the run log.")
@click.option(
    "--estimate",
    "dry_run",
    is_flag=True,
    help="Only print the most the run can cost (calls, tokens, price) and exit: a dry run.",
)
@click.option(
    "--cache",
    type=click.Choice(["use", "bypass", "refresh"]),
    default="use",
    show_default=True,
    help="Use cached answers, bypass the cache, or refresh it with new answers.",
)
def run(
    prompt: str | None,
    config_name: str | None,
    as_json: bool,
    no_log: bool,
    dry_run: bool,
    cache: str,
    **kwargs: Any,
) -> None:
    """Run PROMPT (or standard input) through a consortium, showing each member live."""
    if prompt is None:
        if sys.stdin.isatty():
            _fail("give a PROMPT argument or pipe one on standard input")
        prompt = sys.stdin.read()
    if not prompt.strip():
        _fail("the prompt is empty")
    consortium = _build(config_name, _settings(kwargs), **({"store": False} if no_log else {}))
    if dry_run:
        estimate = consortium.estimate(prompt)
        click.echo(estimate.model_dump_json(indent=2) if as_json else estimate.summary)
        return
    _run(consortium, prompt, as_json, cache)


@main.command()
@click.argument("prompt", required=False)
@click.option(
    "--terminal",
    is_flag=True,
    help="Run one prompt in the terminal instead of serving the chat (implied by PROMPT"
    " or --json).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (terminal).")
@click.option("--port", type=int, help="Port of the chat server (default: a free one).")
@click.option("--no-preheat", is_flag=True, help="Start each page's kernel on demand.")
@click.option("--open", "open_browser", is_flag=True, help="Open the chat in a web browser.")
def demo(
    prompt: str | None,
    terminal: bool,
    as_json: bool,
    port: int | None,
    no_preheat: bool,
    open_browser: bool,
) -> None:
    """Serve the chat app (Voila on 127.0.0.1, offline demo models when no key is set) and
    print its URL; with --terminal, run the offline demo models once in the terminal."""
    if terminal or prompt is not None or as_json:
        click.echo(
            "Offline demo models: canned, deterministic answers — not a real language model.",
            err=True,
        )
        consortium = _build(None, {"models": list(DEMO_MEMBERS), "arbiter": DEMO_ARBITER})
        _run(consortium, prompt or DEMO_PROMPT, as_json)
        return
    try:
        import voila  # noqa: F401

        from consortium_lab.apps import voila as app
    except ImportError as exc:
        _fail(
            f"the chat app needs the 'app' extra ({exc.name} is missing): "
            "pip install 'consortium-lab[app]', or run `consortium-lab demo --terminal`"
        )
    click.echo("Starting the chat (standalone Voila on 127.0.0.1)…", err=True)
    sys.exit(app.serve(port, preheat=not no_preheat, open_browser=open_browser))


# -- configs ----------------------------------------------------------------------------------
@main.group("configs")
def configs_group() -> None:
    """Saved consortiums (shared with `llm consortium list`)."""


@configs_group.command("save")
@click.argument("name")
@_config_options
def configs_save(name: str, **kwargs: Any) -> None:
    """Save a consortium as NAME (it also runs as `llm -m NAME`)."""
    from pydantic import ValidationError

    from consortium_lab import configs
    from consortium_lab.config.consortium import ConsortiumConfig, check_models

    settings = _settings(kwargs)
    if "models" not in settings:
        _fail("give at least one --model")
    try:
        config = check_models(ConsortiumConfig(**settings))
        configs.save(name, config)
    except UnknownModelError as exc:
        _fail(str(exc))
    except (ValidationError, ValueError) as exc:
        _fail(f"invalid configuration: {exc}")
    click.echo(f"Saved {name}")


@configs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def configs_list(as_json: bool) -> None:
    """List saved consortiums; invalid ones are flagged, never hidden."""
    from consortium_lab import configs

    saved = configs.list()
    if as_json:
        click.echo(
            json.dumps(
                [{"name": s.name, "ok": s.ok, "error": s.error, "config": s.raw} for s in saved],
                indent=2,
            )
        )
        return
    if not saved:
        click.echo("No saved consortiums.")
    for s in saved:
        if s.config is None:
            click.echo(f"{s.name}  INVALID: {s.error}")
        else:
            members = ", ".join(f"{m}:{n}" if n > 1 else m for m, n in s.config.models.items())
            click.echo(
                f"{s.name}  models: {members}  arbiter: {s.config.arbiter_model}"
                f"  mode: {s.config.mode}"
            )


@configs_group.command("show")
@click.argument("name")
def configs_show(name: str) -> None:
    """Print a saved consortium as JSON."""
    from consortium_lab import configs

    try:
        saved = configs.get_saved(name)
    except KeyError as exc:
        _fail(_message(exc))
    click.echo(json.dumps(saved.raw, indent=2))
    if saved.error:
        click.echo(f"INVALID: {saved.error}", err=True)


@configs_group.command("remove")
@click.argument("name")
def configs_remove(name: str) -> None:
    """Delete a saved consortium."""
    from consortium_lab import configs

    try:
        configs.remove(name)
    except KeyError as exc:
        _fail(_message(exc))
    click.echo(f"Removed {name}")


@configs_group.command("export")
@click.argument("names", nargs=-1)
def configs_export(names: tuple[str, ...]) -> None:
    """Print saved consortiums (all valid ones, or NAMES) as JSON."""
    from consortium_lab import configs

    try:
        click.echo(configs.export(list(names) or None))
    except KeyError as exc:
        _fail(_message(exc))


@configs_group.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Overwrite configs that already exist.")
def configs_import(file: Any, replace: bool) -> None:
    """Import consortiums from a JSON FILE made by `configs export` ('-' for standard input)."""
    from consortium_lab import configs

    try:
        names = configs.import_json(file.read(), replace=replace)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(f"Imported {', '.join(names)}")


# -- runs -------------------------------------------------------------------------------------
@main.group("runs")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CONSORTIUM_LAB_DB",
    help="The run log file (default: your data folder's runs.db).",
)
@click.pass_context
def runs_group(ctx: click.Context, db: Path | None) -> None:
    """Your run log."""
    ctx.obj = db


@runs_group.command("list")
@click.option("-n", "--limit", type=int, default=20, show_default=True, help="How many runs.")
@click.option("--tag", help="Only the runs of the evaluation with this tag (`eval list`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def runs_list(db: Path | None, limit: int, tag: str | None, as_json: bool) -> None:
    """List recent runs, newest first."""
    from consortium_lab import runs

    rows = runs.list(limit=limit, tag=tag, path=db)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("No runs yet.")
    for r in rows:
        conf = r.get("final_confidence")
        conf_text = "-" if conf is None else f"{conf:.0%}"
        prompt = (r.get("prompt") or "").replace("\n", " ")[:60]
        click.echo(
            f"{r['id']}  {r.get('started_at', '')[:19]}  {r.get('status'):<11}"
            f" {conf_text:>5}  {prompt}"
        )


@runs_group.command("show")
@click.argument("run_id")
@click.pass_obj
def runs_show(db: Path | None, run_id: str) -> None:
    """Show a run as Markdown."""
    from consortium_lab import runs

    try:
        click.echo(runs.export(run_id, format="markdown", path=db))
    except KeyError as exc:
        _fail(_message(exc))


@runs_group.command("export")
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "markdown"]),
    default="json",
    show_default=True,
    help="Export format.",
)
@click.pass_obj
def runs_export(db: Path | None, run_id: str, fmt: str) -> None:
    """Print a run as JSON (the export format) or Markdown."""
    from consortium_lab import runs

    try:
        click.echo(runs.export(run_id, format=fmt, path=db))
    except KeyError as exc:
        _fail(_message(exc))


@runs_group.command("delete")
@click.argument("run_id")
@click.pass_obj
def runs_delete(db: Path | None, run_id: str) -> None:
    """Delete a run from the log."""
    from consortium_lab import runs

    try:
        runs.delete(run_id, path=db)
    except KeyError as exc:
        _fail(_message(exc))
    click.echo(f"Deleted {run_id}")


@main.command("models")
@click.option("--all", "show_all", is_flag=True, help="Include models whose key is missing.")
def models_cmd(show_all: bool) -> None:
    """List the models that can be members or arbiter here."""
    from consortium_lab.config.catalog import list_models

    for info in list_models(include_unusable=show_all):
        aliases = f" (aliases: {', '.join(info.aliases)})" if info.aliases else ""
        missing = "" if info.usable else "  [no key]"
        click.echo(f"{info.label}{aliases}{missing}")


main.add_command(gateway_cmd)
main.add_command(audit_cmd)
main.add_command(eval_cmd)
main.add_command(purge_cmd)
main.add_command(hub_command)
main.add_command(recommend_cmd)
