"""The consortium configuration model.

:class:`ConsortiumConfig` has every field of ``llm_consortium.ConsortiumConfig`` with the same
names and shapes (``models`` is ``{model_id: count}``), so a config saved by either tool loads in
the other. Our own settings are extra top-level keys that upstream ignores: ``mode``,
``stream_individual_responses``, ``member_options``, ``member_system_prompts``,
``arbiter_options`` and ``limits``.

Structural validation (counts, thresholds, iterations) happens when the model is built and
raises pydantic's ``ValidationError``, whose message names the field and the bad value. Whether
the models exist is checked separately by :func:`check_models`, because that needs ``llm``'s
plugins.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from consortium_lab.config import catalog
from consortium_lab.config.rules import normalize_confidence

logger = logging.getLogger(__name__)

Mode = Literal["consortium", "council", "compare", "vote"]
MODES: tuple[str, ...] = get_args(Mode)
"""Every mode, in the order the CLI and the widget offer them."""
ARBITERLESS_MODES = frozenset({"compare", "vote"})
"""Modes without an arbiter call; they run one iteration (``max_iterations`` is not used)."""
JudgingMethod = Literal["default", "rank"]


class ConfigWarning(UserWarning):
    """A config value was accepted after a change (for example a threshold of 80 read as 0.8)."""


class Limits(BaseModel):
    """Per-call limits that stop a member which runs away or hangs."""

    model_config = ConfigDict(extra="forbid")

    first_token_timeout: float | None = Field(
        60.0, gt=0, description="Seconds to wait for the first token before giving up."
    )
    total_timeout: float | None = Field(
        110.0,
        gt=0,
        description="Seconds a single model call may take in all, sized for chat: a rambling "
        "local model is cut within two minutes and its answer kept as truncated.",
    )
    max_output_tokens: int | None = Field(
        8192,
        ge=1,
        description="Output cap per call, also passed as the model's own max-tokens option "
        "when it has one; a longer answer is kept, marked truncated. Estimated while streaming "
        "as characters / 4 (providers report usage only at the end).",
    )


def parse_model_spec(spec: str, known: Iterable[str] = ()) -> tuple[str, int]:
    """Split ``"model:count"`` into ``(model, count)``.

    The suffix is a count only when it is an integer and the whole string is not itself a known
    model id: ``llama3.2:3b`` stays one model, ``gpt-4o:2`` is two instances of ``gpt-4o``.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("models: empty model name")
    if spec in set(known) or ":" not in spec:
        return spec, 1
    name, _, suffix = spec.rpartition(":")
    if _has_count_suffix(spec) and name:
        count = int(suffix)
        if count < 1:
            raise ValueError(f"models: count must be at least 1 in {spec!r} (got {count})")
        return name, count
    return spec, 1


def _has_count_suffix(spec: str) -> bool:
    return spec.rpartition(":")[2].lstrip("-").isdigit()


def parse_models(
    models: Mapping[str, int] | Iterable[str], known: Iterable[str] | None = None
) -> dict[str, int]:
    """Normalise a models argument (a ``{model: count}`` mapping or ``model:count`` strings).

    ``known`` is the set of model ids and aliases; when not given and a spec ends in ``:N``,
    ``llm``'s own list is consulted so an id such as ``phi:2`` is never split by mistake.
    """
    if isinstance(models, Mapping):
        return dict(models)
    if isinstance(models, str):
        models = [models]
    models = list(models)
    if known is None:
        known = (
            catalog.known_names(catalog.list_models(include_unusable=True))
            if any(":" in m and _has_count_suffix(m) for m in models)
            else ()
        )
    known = list(known)
    result: dict[str, int] = {}
    for spec in models:
        name, count = parse_model_spec(spec, known)
        result[name] = result.get(name, 0) + count
    return result


UPSTREAM_ONLY_FIELDS = frozenset(
    {
        "strategy_params",
        "embedding_backend",
        "embedding_model",
        "embedding_cache_enabled",
        "manual_context",
        "category",
        "expected_agreement",
        "status",
    }
)
"""llm-consortium 0.8.0's config fields that only upstream's machinery acts on (see
docs/configuration.md for which of them the compat layer reads)."""

SUPPORTED_STRATEGIES = ("default",)
"""Strategies our engine runs; llm-consortium's others are refused when a consortium is built."""

UPSTREAM_STRATEGIES = ("default", "elimination", "role", "semantic", "voting")


class UnsupportedStrategyError(ValueError):
    """The config names a strategy our engine does not run (refused, never ignored)."""


def check_strategy(strategy: str | None) -> None:
    """Refuse a strategy our engine does not run, naming it and the supported ones."""
    name = strategy or "default"
    if name in SUPPORTED_STRATEGIES:
        return
    known = "llm-consortium's" if name in UPSTREAM_STRATEGIES else "an unknown"
    raise UnsupportedStrategyError(
        f"strategy: {name!r} is {known} strategy, which consortium_lab does not run; "
        f"supported: {', '.join(repr(s) for s in SUPPORTED_STRATEGIES)} "
        "(see docs/switching.md)"
    )


STORED = {"stored": True}
"""Validation context for configs read back from a store: unknown keys (a newer upstream's
fields) are kept there rather than refused."""


def check_setting_names(names: Iterable[str]) -> None:
    """Refuse a setting name that is neither ours nor llm-consortium's, suggesting the closest."""
    known = set(ConsortiumConfig.model_fields) | UPSTREAM_ONLY_FIELDS
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"{name}: unknown setting{hint}")


def _threshold(value: Any, field_name: str) -> float:
    try:
        number, warning = normalize_confidence(value)
    except ValueError as exc:
        raise ValueError(f"{field_name} must be in [0, 1] or (1, 100] (got {value!r})") from exc
    if warning:
        warnings.warn(f"{field_name}: {warning}", ConfigWarning, stacklevel=2)
    return number


class ConsortiumConfig(BaseModel):
    """A consortium: which models answer, who judges, and when to stop iterating."""

    # Upstream rows may carry keys we do not know (embedding settings, category…): keep them so a
    # round trip through our store never loses data.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    models: dict[str, int] = Field(description="Model id or alias -> number of instances.")
    arbiter: str | None = Field(
        None, description="Model that synthesizes (or chairs); the first member if None."
    )
    confidence_threshold: float = Field(0.8, description="Stop once the synthesis reaches this.")
    max_iterations: int = Field(3, description="Never run more iterations than this.")
    minimum_iterations: int = Field(1, description="Always run at least this many iterations.")
    system_prompt: str | None = Field(None, description="User instructions sent to every member.")
    judging_method: JudgingMethod = Field("default", description="'default' synthesis or 'rank'.")
    strategy: str | None = Field("default", description="llm-consortium's strategy name.")
    # llm-consortium 0.8.0's remaining fields, with its defaults, so both tools round-trip them.
    strategy_params: dict[str, Any] | None = Field(
        None, description="llm-consortium: parameters of its strategy."
    )
    embedding_backend: str | None = Field(
        None, description="llm-consortium: embedding backend; compat computes geometric confidence."
    )
    embedding_model: str | None = Field(None, description="llm-consortium: embedding model id.")
    embedding_cache_enabled: bool = Field(True, description="llm-consortium: cache embeddings.")
    manual_context: bool = Field(
        False, description="llm-consortium: manual context mode (ours always keeps context)."
    )
    category: str | None = Field(None, description="llm-consortium: a label for the run log.")
    expected_agreement: float | None = Field(
        None, description="llm-consortium: expected agreement, recorded with each run."
    )
    status: str | None = Field("success", description="llm-consortium: last run status.")

    mode: Mode = Field(
        "consortium",
        description="consortium | council | compare | vote (every member answers once, the "
        "most frequent answer wins, no arbiter).",
    )
    stream_individual_responses: bool = Field(
        True, description="Stream each member's text; off shows progress only, then the synthesis."
    )
    member_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="llm options per member, keyed by model id or 'model#instance'.",
    )
    member_system_prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Extra system prompt per member, keyed by model id or 'model#instance'.",
    )
    arbiter_options: dict[str, Any] = Field(default_factory=dict, description="llm options.")
    limits: Limits = Field(default_factory=lambda: Limits(), description="Per-call limits.")
    arbiter_repair: bool = Field(
        True,
        description="Ask the arbiter once to reformat an output that could not be read.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any, info: ValidationInfo) -> Any:
        # A typo such as max_iteration=5 must not silently keep the default of 3.
        if isinstance(data, Mapping) and not (info.context or {}).get("stored"):
            check_setting_names(data)
        return data

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> dict[str, int]:
        if value is None:
            raise ValueError("models: at least one model is required (got None)")
        models = parse_models(value)
        if not models:
            raise ValueError(f"models: at least one model is required (got {value!r})")
        for name, count in models.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(
                    f"models: count for {name!r} must be an integer >= 1 (got {count!r})"
                )
        return models

    @field_validator("confidence_threshold", mode="before")
    @classmethod
    def _confidence_threshold(cls, value: Any) -> float:
        return _threshold(value, "confidence_threshold")

    @field_validator("max_iterations", "minimum_iterations")
    @classmethod
    def _iterations(cls, value: int, info: Any) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be at least 1 (got {value})")
        return value

    @field_validator("judging_method", "strategy", "embedding_backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() or None if isinstance(value, str) else value

    @field_validator("embedding_model", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value.strip() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _elimination_ranks(self) -> ConsortiumConfig:
        # As upstream: the elimination strategy needs rank judging, and says so when it overrides.
        if self.strategy == "elimination" and self.judging_method != "rank":
            logger.warning("strategy 'elimination' requires rank judging; judging_method -> 'rank'")
            object.__setattr__(self, "judging_method", "rank")
        return self

    @model_validator(mode="after")
    def _order(self) -> ConsortiumConfig:
        if self.minimum_iterations > self.max_iterations:
            raise ValueError(
                f"minimum_iterations ({self.minimum_iterations}) must not exceed "
                f"max_iterations ({self.max_iterations})"
            )
        return self

    @property
    def has_arbiter(self) -> bool:
        """Whether a run of this config asks an arbiter (or chairman): not in compare or vote."""
        return self.mode not in ARBITERLESS_MODES

    @property
    def arbiter_model(self) -> str:
        """The arbiter, defaulting to the first member (as upstream does)."""
        return self.arbiter or next(iter(self.models))

    def members(self) -> list[tuple[str, int]]:
        """Every member instance as ``(model, instance)``, instances numbered from 1."""
        return [(model, i) for model, count in self.models.items() for i in range(1, count + 1)]

    def options_for(self, model: str, instance: int) -> dict[str, Any]:
        """The llm options of one member: per-model, overridden by per-instance."""
        return {
            **self.member_options.get(model, {}),
            **self.member_options.get(f"{model}#{instance}", {}),
        }

    def system_prompt_for(self, model: str, instance: int) -> str | None:
        """The extra system prompt of one member (per-instance wins over per-model)."""
        return self.member_system_prompts.get(
            f"{model}#{instance}", self.member_system_prompts.get(model)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: upstream's keys first, ours as extra top-level keys."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsortiumConfig:
        """Build from a dict such as a saved config row or ``llm_consortium``'s ``to_dict()``;
        keys neither tool knows are kept, not refused."""
        return cls.model_validate(dict(data), context=STORED)


def check_models(
    config: ConsortiumConfig,
    models: list[catalog.ModelInfo] | None = None,
    *,
    also_known: Iterable[str] = (),
) -> ConsortiumConfig:
    """Check every member and the arbiter against the models ``llm`` can use here.

    ``also_known``: further valid names, such as the gateway's model groups. Raises
    :class:`catalog.UnknownModelError` naming the field (``models`` or ``arbiter``), the bad
    value and close matches. Returns the config unchanged so it can be chained.
    """
    models = catalog.list_models() if models is None else models
    extra = set(also_known)
    names = [("models", name) for name in config.models]
    if config.has_arbiter:
        names.append(("arbiter", config.arbiter_model))
    for field_name, name in names:
        if name not in extra:
            catalog.resolve(name, field_name=field_name, models=models)
    return config
