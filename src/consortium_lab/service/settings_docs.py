"""The settings documenting themselves: ``consortium-lab gateway --help-settings``,
``--help-all`` and ``--generate-config`` (a commented Python config file), all from the traits'
``help``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from traitlets import Enum

from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.quotas import QuotaPolicy
from consortium_lab.service.settings import ServiceSettings

__all__ = ["generate_config", "help_all", "settings_help"]


def _plain(value: Any) -> Any:
    """A setting's value as JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def settings_help() -> str:
    """Every setting with its default and help (``consortium-lab gateway --help-settings``)."""
    traits = ServiceSettings.class_traits(config=True)
    lines = [
        "Gateway service settings (a JSON, YAML or Python config file may set any of them; CLI"
        " options override the file):",
        "",
    ]
    fresh = ServiceSettings()
    for name in ServiceSettings.names():
        value = _plain(getattr(fresh, name))
        if traits[name].metadata.get("secret") and value:
            value = "***"
        default = json.dumps(value, default=str)
        lines.append(f"  {name}  (default: {default})")
        lines.append(f"      {traits[name].help}")
    lines += [
        "",
        "QuotaPolicy fields: " + ", ".join(QuotaPolicy.model_fields) + " (positive integers or "
        "null).",
        "limits fields: " + ", ".join(Limits.model_fields) + ".",
    ]
    return "\n".join(lines)


def help_all() -> str:
    """Every setting with its type, help and default, as a Python config file sets it
    (``consortium-lab gateway --help-all``)."""
    traits = ServiceSettings.class_traits(config=True)
    lines = [
        "Settings: a YAML or JSON file (--config FILE) sets them by NAME; a Python config file",
        "(--config FILE.py, as --generate-config writes) as c.ServiceSettings.NAME = VALUE.",
        "",
    ]
    for name in ServiceSettings.names():
        trait = traits[name]
        lines.append(f"c.ServiceSettings.{name} = <{type(trait).__name__}>")
        lines += textwrap.wrap(
            trait.help, 96, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
        )
        if isinstance(trait, Enum):
            lines.append(f"    Choices: {trait.info()}")
        # A secret's default is empty: nothing to hide.
        lines.append(f"    Default: {trait.default_value_repr()}")
        lines.append("")
    return "\n".join(lines)


def generate_config() -> str:
    """A Python config file with every setting commented out at its default, each with its
    help (``consortium-lab gateway --generate-config``)."""
    return "\n".join(
        [
            "# Configuration file for consortium-lab gateway.",
            "#",
            "# Run it with: consortium-lab gateway --config THIS_FILE.py",
            "# Uncomment a line and change its value to set a setting; the names are the same in",
            "# a YAML or JSON settings file.",
            "",
            "c = get_config()  # noqa",
            "",
            ServiceSettings.class_config_section(),
        ]
    )
