"""``consortium-lab gateway``: run the gateway HTTP service, or describe its settings.

The settings themselves (names, defaults, help) live in
:class:`~consortium_lab.service.settings.ServiceSettings`; the options here are shortcuts
that override a settings file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

DEFAULT_CONFIG_FILE = "gateway_config.py"


@click.command("gateway")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Settings file: YAML, JSON, or a Python config file (.py, as --generate-config writes)."
    " See --help-settings. Options below override it.",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8750; 0: any free port).")
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite ledger file: usage, quotas, access rules (default <data folder>/gateway/"
    "ledger.db).",
)
@click.option("--redis", help="redis:// URL for the ledger, quota counters and cache (replicas).")
@click.option(
    "--cache", help="Response cache: auto, none, a folder or a redis:// URL (default auto)."
)
@click.option(
    "--shared-cache/--no-shared-cache",
    default=None,
    help="Serve cached answers across users (default: per user).",
)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Static user tokens file (JSON or YAML): {tokens: {TOKEN: {user, groups}}}.",
)
@click.option(
    "--admin-token",
    "admin_tokens",
    multiple=True,
    help="Token for the /admin API, repeatable (prefer $CONSORTIUM_GATEWAY_ADMIN_TOKENS: "
    "command lines are visible to other users).",
)
@click.option("--hub-api-url", help="JupyterHub API URL: check tokens with the hub.")
@click.option(
    "-m", "--model", "models", multiple=True, help="Offer this model (id or glob), repeatable."
)
@click.option("--max-lifetime", type=float, help="Stop by itself after this many seconds.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level (default INFO).",
)
@click.option("--help-settings", is_flag=True, help="Describe every setting briefly and exit.")
@click.option(
    "--help-all",
    is_flag=True,
    help="Print this help and every setting with its type, help and default, then exit.",
)
@click.option(
    "--generate-config",
    "generate_config",
    is_flag=False,
    flag_value=DEFAULT_CONFIG_FILE,
    default=None,
    metavar="[FILE]",
    help="Write a commented Python config file with every setting at its default (to FILE, "
    f"default {DEFAULT_CONFIG_FILE}; '-' for standard output) and exit.",
)
@click.pass_context
def gateway_cmd(
    ctx: click.Context,
    config_file: Path | None,
    help_settings: bool,
    help_all: bool,
    generate_config: str | None,
    admin_tokens: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Run the gateway as an HTTP service speaking the OpenAI chat-completions protocol.

    It holds the provider keys (its own llm key store and environment), authenticates callers
    by bearer token, and applies per-user quotas, access rules and cache. Kernels connect with
    consortium_lab.apps.connect(URL, TOKEN).
    """
    skip_llm_consortium_plugin()
    try:
        from consortium_lab.service import app as service
        from consortium_lab.service import settings_docs
        from consortium_lab.service.settings import ServiceSettings, SettingsError
    except ImportError as exc:
        raise click.ClickException(
            f"the gateway service needs its extra: pip install 'consortium-lab[gateway]' ({exc})"
        ) from None
    if help_settings:
        click.echo(settings_docs.settings_help())
        return
    if help_all:
        click.echo(ctx.get_help())
        click.echo("")
        click.echo(settings_docs.help_all())
        return
    if generate_config is not None:
        _write_config(generate_config, settings_docs.generate_config())
        return
    overrides = {k: v for k, v in kwargs.items() if v not in (None, ())}
    if "models" in overrides:
        overrides["models"] = list(overrides["models"])
    if admin_tokens:
        overrides["admin_tokens"] = list(admin_tokens)
    try:
        settings = ServiceSettings.load(config_file, overrides)
        service.run(settings)
    except SettingsError as exc:
        raise click.ClickException(f"invalid gateway settings: {exc}") from None
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


def skip_llm_consortium_plugin() -> None:
    """Keep llm-consortium's ``llm`` plugin out of the service process (unless
    ``CONSORTIUM_LAB_GATEWAY_PLUGINS=all``): the service relays model calls and never runs a
    saved consortium, and the plugin imports scikit-learn (about 85 MB of its peak memory)."""
    if os.environ.get("CONSORTIUM_LAB_GATEWAY_PLUGINS", "") == "all":
        return
    import llm.plugins

    if not llm.plugins._loaded:  # pluggy skips a blocked name when it loads entry points
        llm.plugins.pm.set_blocked("llm_consortium")


def _write_config(target: str, text: str) -> None:
    if target == "-":
        click.echo(text)
        return
    path = Path(target).expanduser()
    if path.exists():
        raise click.ClickException(f"{path} already exists: remove it or name another file")
    path.write_text(text + "\n", encoding="utf-8")
    click.echo(f"Wrote {path}", err=True)
