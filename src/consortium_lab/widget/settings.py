"""The settings a chat edits: per-member fields, ``llm`` options checks, the demo consortium."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from consortium_lab.config import catalog
from consortium_lab.config.consortium import ConsortiumConfig

__all__ = [
    "DEMO_ARBITER",
    "DEMO_MEMBERS",
    "PER_MEMBER_FIELDS",
    "check_llm_options",
    "check_member_keys",
    "default_config",
    "demo_config",
    "merge_per_member",
    "model_entry",
    "plain_error",
]

DEMO_MEMBERS = ("demo-analyst", "demo-optimist", "demo-skeptic")
DEMO_ARBITER = "demo-arbiter"

PER_MEMBER_FIELDS = ("member_options", "member_system_prompts")
"""Config fields keyed by member (model id or ``"model#instance"``): a ``set_config`` with
``merge`` merges them per member, and a member given ``null`` (or ``{}`` / ``""``) is
removed."""


def merge_per_member(name: str, current: Any, patch: Any) -> dict[str, Any]:
    """``current`` (a per-member field) with ``patch`` merged in: a member given ``null``,
    ``{}`` or ``""`` is removed. Raises ``ValueError`` on a value of the wrong shape."""
    if not isinstance(patch, Mapping):
        raise ValueError(f"{name} must be an object keyed by member (got {type(patch).__name__})")
    merged = dict(current or {})
    for key, value in patch.items():
        if value is None or value == {} or (isinstance(value, str) and not value.strip()):
            merged.pop(str(key), None)
        elif name == "member_options" and not isinstance(value, Mapping):
            raise ValueError(
                f"member_options: the options of {key} must be a JSON object such as "
                f'{{"temperature": 0.2}} (got {type(value).__name__})'
            )
        elif name == "member_system_prompts" and not isinstance(value, str):
            raise ValueError(
                f"member_system_prompts: the system prompt of {key} must be text "
                f"(got {type(value).__name__})"
            )
        else:
            merged[str(key)] = value
    return merged


def _member_model(key: str, models: Mapping[str, Any]) -> str | None:
    """The member model a per-member key names (``model`` or ``model#instance``), or None."""
    if key in models:
        return key
    model, sep, instance = key.rpartition("#")
    if sep and instance.isdigit() and model in models and 1 <= int(instance) <= int(models[model]):
        return model
    return None


def check_member_keys(name: str, patch: Any, models: Any) -> None:
    """Refuse per-member settings given for a key that names no member of ``models``."""
    models = models if isinstance(models, Mapping) else {}
    for key, value in (patch or {}).items():
        if value is not None and _member_model(str(key), models) is None:
            known = ", ".join(
                f"{m}" + (f" (#1-#{n})" if int(n) > 1 else "") for m, n in models.items()
            )
            raise ValueError(
                f"{name}: {key!r} is not a member of this consortium (members: {known}; "
                "use a model id or model#instance)"
            )


# Each setting as the settings panel labels it, and what a valid value is, in plain words.
_FIELD_RULES: dict[str, tuple[str, str]] = {
    "confidence_threshold": ("Threshold", "must be between 0 and 1, or a percentage up to 100"),
    "max_iterations": ("Maximum iterations", "must be a whole number of at least 1"),
    "minimum_iterations": ("Minimum iterations", "must be a whole number of at least 1"),
    "models": ("Members", "need at least one model, each with a count of at least 1"),
    "mode": ("Mode", "must be consortium, council or compare"),
    "arbiter": ("Arbiter", "must be a model id, or empty for the first member"),
    "system_prompt": ("System prompt", "must be text"),
    "stream_individual_responses": ("Streaming", "must be on or off"),
    "member_options": ("Per-member options", "must be a JSON object for each member"),
    "member_system_prompts": ("Per-member system prompts", "must be text for each member"),
    "arbiter_options": ("Arbiter options", 'must be a JSON object such as {"temperature": 0.2}'),
}

# pydantic's error types, as what the value must be.
_TYPE_RULES = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be on or off",
    "bool_type": "must be on or off",
    "string_type": "must be text",
    "dict_type": "must be a JSON object",
    "missing": "is required",
    "extra_forbidden": "is not an option of this model",
    "greater_than_equal": "is too small",
    "less_than_equal": "is too large",
}


def _strip_pydantic(text: str) -> str:
    # pydantic prefixes a validator's own message with its kind ("Value error, ...").
    for prefix in ("Value error, ", "Assertion failed, "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text


def _plain_line(error: Mapping[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    kind = str(error.get("type", ""))
    name = loc[0] if loc else ""
    if name in _FIELD_RULES:
        label, rule = _FIELD_RULES[name]
        return f"{label} {rule}"
    if not loc and kind == "value_error":
        data = error.get("input")
        if isinstance(data, Mapping) and "minimum_iterations" in data:
            return (
                f"Minimum iterations ({data.get('minimum_iterations')}) cannot be more than "
                f"maximum iterations ({data.get('max_iterations', 3)})"
            )
    text = _TYPE_RULES.get(kind) or _strip_pydantic(str(error.get("msg", "")))
    where = " ".join(loc).replace("_", " ")
    return f"{where.capitalize()} {text}" if where else text


def plain_error(exc: BaseException) -> str:
    """An error as plain words for the page: a ``ValidationError`` of a setting becomes what a
    valid value is ("Threshold must be between 0 and 1, or a percentage up to 100"), with
    none of pydantic's text (types, input values, links); other errors keep their message."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        lines = list(dict.fromkeys(_plain_line(e) for e in exc.errors()))
        return "; ".join(lines) or "Invalid setting"
    text = str(exc).strip().strip("'\"")
    return re.sub(r"\s+For further information visit \S+", "", text) or type(exc).__name__


def _options_problem(model_id: str, options: Mapping[str, Any]) -> str | None:
    from pydantic import ValidationError

    options_class = catalog.options_class(model_id)
    if not options or options_class is None:
        return None
    try:
        options_class(**options)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'} "
            + (_TYPE_RULES.get(e["type"]) or _strip_pydantic(e["msg"]).lower())
            for e in exc.errors()
        )
    except TypeError as exc:
        return str(exc)
    return None


def check_llm_options(config: ConsortiumConfig) -> ConsortiumConfig:
    """Check ``member_options`` and ``arbiter_options`` against each model's own ``llm``
    options (a misspelt option or a bad value would fail every call of the run). Raises
    ``ValueError`` naming the member and the option; keys naming no member are not checked
    (they are unused). Returns the config unchanged."""
    for key, options in config.member_options.items():
        model = _member_model(key, config.models)
        problem = _options_problem(model, options) if model is not None else None
        if problem:
            raise ValueError(f"member_options of {key} ({model}): {problem}")
    if config.has_arbiter and config.arbiter_options:
        problem = _options_problem(config.arbiter_model, config.arbiter_options)
        if problem:
            raise ValueError(f"arbiter_options ({config.arbiter_model}): {problem}")
    return config


def model_entry(info: catalog.ModelInfo) -> dict[str, Any]:
    """A model as the ``models`` trait lists it: ``{id, label, demo, aliases}``."""
    return {
        "id": info.model_id,
        "label": f"{info.model_id} (offline demo)" if info.is_demo else info.model_id,
        "demo": info.is_demo,
        "aliases": list(info.aliases),
    }


def demo_config() -> ConsortiumConfig:
    """The offline demo consortium (three demo members, the demo arbiter)."""
    return ConsortiumConfig(models=dict.fromkeys(DEMO_MEMBERS, 1), arbiter=DEMO_ARBITER)


def default_config(model_ids: list[str]) -> ConsortiumConfig:
    """The config a chat starts with when given none and the run log has none: the demo
    consortium when its models are here, else the first model usable here on its own."""
    if not model_ids or all(m in model_ids for m in (*DEMO_MEMBERS, DEMO_ARBITER)):
        # Without any model, the demo config fails at check time with a clear message.
        return demo_config()
    return ConsortiumConfig(models={model_ids[0]: 1}, arbiter=model_ids[0])
