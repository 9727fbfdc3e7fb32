"""Which models ``llm`` can actually use here, and resolving a model id or alias to one of them.

A model is *usable* when it needs no key or its key is set (``llm keys set`` or its environment
variable). Saved consortiums that llm-consortium registers as ``llm`` models are never offered:
they bypass our engine and a config could contain itself.
"""

from __future__ import annotations

import difflib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llm
from pydantic import BaseModel

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
    # A ConsortiumModel exists only once llm has loaded llm-consortium's plugin; importing the
    # package here just to check would load numpy and scikit-learn into every kernel.
    upstream = sys.modules.get("llm_consortium")
    return upstream is not None and isinstance(model, upstream.ConsortiumModel)


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


# -- looking a model up in llm --------------------------------------------------------------
# The one place the package asks ``llm`` for a model object by id (the gateway to call it, the
# service and the widget for its options).


@dataclass(frozen=True)
class LlmModel:
    """The ``llm`` model behind an id: its async implementation where it has one, else its
    sync one (exactly one of the two is set)."""

    async_model: llm.AsyncModel | None
    model: llm.Model | None

    @property
    def options_class(self) -> type[BaseModel] | None:
        """The model's ``Options`` (pydantic) class, which names the options it accepts."""
        found = self.async_model if self.async_model is not None else self.model
        return getattr(found, "Options", None)


def lookup(model_id: str) -> LlmModel:
    """The ``llm`` model of ``model_id`` (an id or alias), the async one preferred.

    Raises ``llm.UnknownModelError`` when ``llm`` knows no model by that name. Each call asks
    every plugin to register its models again (see :class:`ModelLookups` to keep the result).
    """
    try:
        return LlmModel(llm.get_async_model(model_id), None)
    except llm.UnknownModelError:
        return LlmModel(None, llm.get_model(model_id))


def options_class(model_id: str) -> type[BaseModel] | None:
    """The ``Options`` class of the model ``model_id``; ``None`` when ``llm`` does not know it."""
    try:
        return lookup(model_id).options_class
    except llm.UnknownModelError:
        return None


class ModelLookups:
    """:func:`lookup`, each id looked up once; thread-safe.

    ``llm.get_async_model`` asks every plugin to register all its models again (the OpenAI
    plugin re-reads its YAML file): about 4 ms of CPU per call, a quarter of the engine's CPU
    under load. Models are plain descriptions, so one look-up per owner is enough; a model
    added to ``llm`` later is found on its first use (an unknown id is not remembered).

    Args:
        prepare: called once on each model object found (the gateway hands it a shared HTTP
            client); its result is what is kept. Each owner gets its own objects, so what one
            owner's ``prepare`` changes never reaches another's.
    """

    def __init__(self, prepare: Callable[[Any], Any] | None = None) -> None:
        self._prepare = prepare
        self._found: dict[str, LlmModel] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> LlmModel:
        """The model of ``model_id``; raises ``llm.UnknownModelError`` like :func:`lookup`."""
        with self._lock:
            found = self._found.get(model_id)
        if found is None:
            found = lookup(model_id)
            if self._prepare is not None:
                found = LlmModel(
                    None if found.async_model is None else self._prepare(found.async_model),
                    None if found.model is None else self._prepare(found.model),
                )
            with self._lock:
                # Two threads may look the same id up at once: the first one kept wins.
                found = self._found.setdefault(model_id, found)
        return found


def all_model_options() -> dict[str, tuple[frozenset[str], type[BaseModel] | None]]:
    """:func:`model_options` of every model ``llm`` knows, by model id, from one pass over its
    plugins per kind (each :func:`model_options` call is a pass of its own: every plugin
    registers all its models again, tens of milliseconds of CPU each)."""
    found: dict[str, tuple[frozenset[str], type[BaseModel] | None]] = {}
    # Sync first: the async implementation, where there is one, wins (as lookup prefers it).
    for model in [*llm.get_models(), *llm.get_async_models()]:
        options = getattr(model, "Options", None)
        found[model.model_id] = (frozenset(getattr(options, "model_fields", {}) or {}), options)
    return found


def model_options(model_id: str) -> tuple[frozenset[str], type[BaseModel] | None]:
    """The option names a model takes and its ``Options`` class, for checking a request's
    options; ``(frozenset(), None)`` when ``llm`` does not know the model."""
    found = options_class(model_id)
    return frozenset(getattr(found, "model_fields", {}) or {}), found
