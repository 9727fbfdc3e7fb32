"""The models the service offers (``GET /v1/models``), found through the model catalog.

A model is offered when ``llm`` can use it here (its key is set), it matches the ``models``
setting and not ``exclude_models``; a configured group is offered when one of its deployments
is. The list is re-read every ``models_refresh`` seconds, and at once when a caller names a
model the service does not know yet.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from consortium_lab.config import catalog
from consortium_lab.gateway.ledger import Rules
from consortium_lab.service.auth import Identity
from consortium_lab.service.errors import ApiError
from consortium_lab.service.settings import ServiceSettings

__all__ = ["ModelDirectory", "Offered", "discover_models"]

OWNED_BY = "consortium-lab"


@dataclass(frozen=True)
class Offered:
    """The models the service offers now."""

    ids: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    """Every id and alias -> the model id."""
    options: Mapping[str, frozenset[str]] = field(default_factory=dict)
    options_class: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def discover_models(settings: ServiceSettings) -> Offered:
    """Which models to offer: usable llm models matching ``models`` and not ``exclude_models``,
    and the configured groups (blocking: reads llm's plugins and files)."""
    offered: list[catalog.ModelInfo] = []
    options: dict[str, frozenset[str]] = {}
    classes: dict[str, type[BaseModel] | None] = {}
    usable = catalog.list_models()
    usable_ids = {info.model_id for info in usable}
    known = catalog.all_model_options()  # one pass over llm's plugins, not one per model

    def model_options(model_id: str) -> tuple[frozenset[str], type[BaseModel] | None]:
        return known.get(model_id) or catalog.model_options(model_id)

    for info in usable:
        if not _matches(info.model_id, settings.models) or _matches(
            info.model_id, settings.exclude_models
        ):
            continue
        offered.append(info)
        options[info.model_id], classes[info.model_id] = model_options(info.model_id)
    for group, deployments in settings.groups.items():
        if not _matches(group, settings.models) or _matches(group, settings.exclude_models):
            continue
        present = [d for d in deployments if d in usable_ids]
        if not present:
            continue
        offered.append(catalog.ModelInfo(model_id=group))
        found = [model_options(d) for d in present]
        options[group] = frozenset.intersection(*(f for f, _ in found))
        classes[group] = found[0][1]
    ids = tuple(sorted({info.model_id for info in offered}))
    return Offered(ids, catalog.known_names(offered), options, classes)


class ModelDirectory:
    """The models offered now, re-read when they are older than ``models_refresh``."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._offered = Offered()
        self._offered_at = -math.inf
        self._lock = asyncio.Lock()

    async def offered(self, *, refresh: bool = False) -> Offered:
        """The models offered now (re-read every ``models_refresh`` seconds or on demand)."""
        age = time.monotonic() - self._offered_at
        if refresh or age > self.settings.models_refresh:
            async with self._lock:
                if refresh or time.monotonic() - self._offered_at > self.settings.models_refresh:
                    self._offered = await asyncio.to_thread(discover_models, self.settings)
                    self._offered_at = time.monotonic()
        return self._offered

    async def resolve(self, name: str) -> tuple[str, Offered]:
        """The model id ``name`` (an id or alias) stands for, and the offer it is in; a 404
        ``model_not_found`` when the service does not offer it."""
        offered = await self.offered()
        model = offered.names.get(name)
        if model is None and time.monotonic() - self._offered_at > 2.0:
            offered = await self.offered(refresh=True)
            model = offered.names.get(name)
        if model is None:
            raise ApiError(
                404,
                f"The model '{name}' does not exist or is not offered by this gateway.",
                code="model_not_found",
                param="model",
            )
        return model, offered

    async def listing(self, identity: Identity, rules: Rules) -> dict[str, Any]:
        """The ``GET /v1/models`` body: the offered models ``identity`` may use."""
        offered = await self.offered()
        data = [
            {"id": mid, "object": "model", "created": 0, "owned_by": OWNED_BY}
            for mid in offered.ids
            if rules.allows(identity.user, identity.groups, mid)
        ]
        return {"object": "list", "data": data}
