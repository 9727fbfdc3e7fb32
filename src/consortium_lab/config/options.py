"""Checking ``llm`` options against the model that takes them, and finding a model's own
max-tokens option.

Each ``llm`` model declares its options as a pydantic ``Options`` class (``llm.Options`` refuses
unknown fields). Checking a config's ``member_options`` and ``arbiter_options`` against those
classes when the consortium is built turns a typo or an option the model does not take into a
config error naming the member, instead of a failure of every call of the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from consortium_lab.config import catalog

if TYPE_CHECKING:
    from consortium_lab.config.consortium import ConsortiumConfig

__all__ = [
    "MAX_TOKENS_OPTIONS",
    "OptionError",
    "check_config_options",
    "check_options",
    "max_tokens_option",
]

MAX_TOKENS_OPTIONS: tuple[str, ...] = (
    "max_tokens",  # llm's OpenAI models and most OpenAI-compatible plugins, llm-anthropic
    "max_output_tokens",  # llm-gemini
    "num_predict",  # llm-ollama
    "max_new_tokens",  # transformers-style plugins
    "n_predict",  # llama.cpp server-style plugins
)
"""The option names, in order, that a model's own output cap goes by: the first one a model's
``Options`` class has receives ``Limits.max_output_tokens`` (unless the config sets it)."""


class OptionError(ValueError):
    """An option a model does not take, or a value of the wrong type for it."""

    def __init__(self, who: str, model: str, problems: list[str], accepted: Iterable[str]):
        names = sorted(accepted)
        takes = ", ".join(names) if names else "no options at all"
        super().__init__(
            f"{who}: {'; '.join(problems)} (model {model!r} takes: {takes})",
        )
        self.who = who
        self.model = model
        self.problems = problems
        self.accepted = names


def max_tokens_option(options_class: type[BaseModel] | None) -> str | None:
    """The name of the model's own max-tokens option, or ``None`` when it has none."""
    fields = getattr(options_class, "model_fields", None) or {}
    return next((name for name in MAX_TOKENS_OPTIONS if name in fields), None)


def check_options(
    who: str, model: str, options: Mapping[str, Any], options_class: type[BaseModel] | None
) -> None:
    """Validate ``options`` against ``options_class``; raise :class:`OptionError` naming
    ``who`` (a member such as ``models['gpt-4o#2']``), each bad option and what the model
    takes. Unknown models (``options_class`` None) are left to the model check."""
    if not options or options_class is None:
        return
    fields = getattr(options_class, "model_fields", {}) or {}
    try:
        options_class(**dict(options))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "options"
            if error["type"] == "extra_forbidden" or name not in fields:
                problems.append(f"unknown option {name!r}")
            else:
                problems.append(f"option {name!r}: {error['msg']} (got {error.get('input')!r})")
        raise OptionError(who, model, problems, fields) from None
    except TypeError as exc:  # an Options class that is not pydantic-strict
        raise OptionError(who, model, [str(exc)], fields) from None


def check_config_options(
    config: ConsortiumConfig, lookup: Any = catalog.options_class
) -> ConsortiumConfig:
    """Check every member's and the arbiter's options against their model's ``Options``.

    ``lookup`` maps a model id to its ``Options`` class (``None`` when unknown: a gateway
    group, say, whose deployments are checked when called). Returns ``config`` unchanged.
    """
    classes: dict[str, type[BaseModel] | None] = {}

    def options_class(model: str) -> type[BaseModel] | None:
        if model not in classes:
            classes[model] = lookup(model)
        return classes[model]

    for key, options in config.member_options.items():
        model = key.rpartition("#")[0] if "#" in key else key
        check_options(f"member_options[{key!r}]", model, options, options_class(model))
    if config.has_arbiter and config.arbiter_options:
        arbiter = config.arbiter_model
        check_options("arbiter_options", arbiter, config.arbiter_options, options_class(arbiter))
    return config
