"""Which models ``llm`` can actually use here, and resolving a model id or alias to one of them.

A model is *usable* when it needs no key or its key is set (``llm keys set`` or its environment
variable). Saved consortiums that llm-consortium registers as ``llm`` models are never offered:
they bypass our engine and a config could contain itself.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import llm

DEMO_PREFIX = "demo-"


@dataclass(frozen=True)
class ModelInfo:
    """One model ``llm`` knows about, as offered to members and arbiters."""

    model_id: str
    aliases: tuple[str, ...] = field(default_factory=tuple)
    has_async: bool = False
    needs_key: bool = False
    has_key: bool = True
    is_demo: bool = False

    @property
    def usable(self) -> bool:
        """True when the model can be called now (no key needed, or its key is set)."""
        return not self.needs_key or self.has_key

    @property
    def label(self) -> str:
        """Display name; offline demo models say so."""
        return f"{self.model_id} (offline demo model)" if self.is_demo else self.model_id


class UnknownModelError(ValueError):
    """A model id or alias that no usable ``llm`` model answers to."""

    def __init__(self, name: str, field_name: str, suggestions: list[str]) -> None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"{field_name}: unknown or unusable model {name!r}.{hint}")
        self.name = name
        self.field_name = field_name
        self.suggestions = suggestions


def _is_consortium(model: object) -> bool:
    # Imported lazily: llm_consortium is heavy (numpy, sklearn) and only needed for the check.
    from llm_consortium import ConsortiumModel

    return isinstance(model, ConsortiumModel)


def _has_key(model: llm.Model) -> bool:
    if not getattr(model, "needs_key", None):
        return True
    try:
        return bool(model.get_key())
    except llm.NeedsKeyException:
        return False


def list_models(*, include_unusable: bool = False) -> list[ModelInfo]:
    """The models ``llm`` can use here (keys present, local or demo), consortiums excluded."""
    async_ids = {m.model_id for m in llm.get_async_models()}
    infos = []
    for entry in llm.get_models_with_aliases():
        model = entry.model
        if _is_consortium(model):
            continue
        info = ModelInfo(
            model_id=model.model_id,
            aliases=tuple(entry.aliases),
            has_async=model.model_id in async_ids,
            needs_key=bool(getattr(model, "needs_key", None)),
            has_key=_has_key(model),
            is_demo=model.model_id.startswith(DEMO_PREFIX),
        )
        if include_unusable or info.usable:
            infos.append(info)
    return infos


def known_names(models: list[ModelInfo]) -> dict[str, str]:
    """Map every id and alias to its model id."""
    names: dict[str, str] = {}
    for info in models:
        names[info.model_id] = info.model_id
        for alias in info.aliases:
            names.setdefault(alias, info.model_id)
    return names


def resolve(name: str, *, field_name: str = "models", models: list[ModelInfo] | None = None) -> str:
    """Return the model id that ``name`` (an id or alias) refers to among usable models.

    Raises :class:`UnknownModelError` listing close matches when there is none.
    """
    models = list_models() if models is None else models
    names = known_names(models)
    if name in names:
        return names[name]
    suggestions = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
    raise UnknownModelError(name, field_name, suggestions)


def lookup(model_id: str) -> tuple[llm.AsyncModel | None, llm.Model | None]:
    """The ``llm`` model objects of ``model_id`` (an id or alias): ``(async model, None)`` when
    ``llm`` has an async one, else ``(None, sync model)``.

    Each call asks every ``llm`` plugin to register its models again (milliseconds of CPU):
    callers on a hot path keep what it returns. Raises ``llm.UnknownModelError``.
    """
    try:
        return llm.get_async_model(model_id), None
    except llm.UnknownModelError:
        return None, llm.get_model(model_id)


def options_class(model_id: str) -> type[llm.Options] | None:
    """The ``Options`` class (pydantic) of an ``llm`` model, or None when ``llm`` does not know
    the model (or a plugin fails to load it): then there is nothing to check options against."""
    try:
        async_model, model = lookup(model_id)
    except Exception:
        return None
    return getattr(async_model or model, "Options", None)
