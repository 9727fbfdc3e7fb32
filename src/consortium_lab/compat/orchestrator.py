"""``ConsortiumOrchestrator`` and ``create_consortium``: upstream's entry points on our engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from consortium_lab.compat.geometry import Embedder, iteration_geometry
from consortium_lab.compat.result import iteration_dicts, to_upstream_dict
from consortium_lab.compat.upstream_log import record_upstream_run
from consortium_lab.config.consortium import (
    STORED,
    ConsortiumConfig,
    check_models,
    check_strategy,
    parse_models,
)
from consortium_lab.config.embedding import embedding_model_id
from consortium_lab.engine.consortium import Consortium
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.calls import CacheMode
from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.llm_logs import llm_logging_on

__all__ = ["CompatOrchestrator", "ConsortiumOrchestrator", "create_consortium"]

_ENGINE_ARGS = ("gateway", "store", "sinks")
_T = TypeVar("_T")


def _as_config(config: Any) -> ConsortiumConfig:
    """Ours, upstream's ``ConsortiumConfig`` (or anything with ``model_dump``) or a dict."""
    if isinstance(config, ConsortiumConfig):
        return config
    if hasattr(config, "model_dump"):
        config = config.model_dump()
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config: expected a ConsortiumConfig or a dict of one (got {type(config).__name__})"
        )
    return ConsortiumConfig.model_validate(dict(config), context=STORED)


class ConsortiumOrchestrator:
    """llm-consortium's ``ConsortiumOrchestrator(config, config_name=None)`` on our engine.

    The same attributes (``config``, ``models``, ``arbiter``, ``iteration_history``,
    ``consortium_id`` …) and public methods (:meth:`orchestrate`, :meth:`get_embedding_service`).
    A strategy our engine does not run is refused here, when the orchestrator is built; the
    models are checked on the first :meth:`orchestrate`, as upstream checks them when it calls.

    Args:
        config: our :class:`ConsortiumConfig`, upstream's, or a dict of one.
        config_name: the saved config's name, recorded with each run (as upstream does).
        gateway: the :class:`Gateway` every call goes through (a default one if None).
        store: our run log (see :class:`Consortium`); ``False`` keeps none.
        sinks: extra callables that receive every event.
        cache: the default cache mode of :meth:`orchestrate`: ``"bypass"`` (upstream asks the
            models again on every call), ``"use"`` or ``"refresh"``.
    """

    def __init__(
        self,
        config: Any,
        config_name: str | None = None,
        *,
        gateway: Gateway | None = None,
        store: Any = None,
        sinks: Sequence[Any] = (),
        cache: CacheMode = "bypass",
    ) -> None:
        self.config = _as_config(config)
        check_strategy(self.config.strategy)
        # A backend we cannot embed with is refused now; its model is looked up at first use.
        embedding_model_id(self.config.embedding_backend, self.config.embedding_model)
        self.config_name = config_name
        self.cache: CacheMode = _cache_mode(cache)
        self.iteration_history: list[dict[str, Any]] = []
        self.consortium_id: str | None = None
        self.last_result: RunResult | None = None
        self._engine_args: dict[str, Any] = {"gateway": gateway, "store": store, "sinks": sinks}
        self._consortium: Consortium | None = None
        self._embedder: Embedder | None = None

    # upstream's attributes, read from the config
    @property
    def models(self) -> dict[str, int]:
        return self.config.models

    @property
    def arbiter(self) -> str | None:
        return self.config.arbiter

    @property
    def system_prompt(self) -> str | None:
        return self.config.system_prompt

    @property
    def confidence_threshold(self) -> float:
        return self.config.confidence_threshold

    @property
    def max_iterations(self) -> int:
        return self.config.max_iterations

    @property
    def minimum_iterations(self) -> int:
        return self.config.minimum_iterations

    @property
    def judging_method(self) -> str:
        return self.config.judging_method

    @property
    def manual_context(self) -> bool:
        return self.config.manual_context

    @property
    def consortium(self) -> Consortium:
        """Our engine's :class:`Consortium`, built (and its models checked) on first use."""
        if self._consortium is None:
            engine_config = self.config
            if self.config.arbiter is None:
                # Upstream without an arbiter: no arbiter call, one iteration, first answer.
                engine_config = self.config.model_copy(
                    update={"mode": "compare", "max_iterations": 1, "minimum_iterations": 1}
                )
            consortium = Consortium(engine_config, check_models=False, **self._engine_args)
            check_models(engine_config, also_known=consortium.gateway.group_names)
            self._embedder = Embedder.for_config(self.config, consortium.gateway)
            self._consortium = consortium
        return self._consortium

    def orchestrate(
        self,
        prompt: str,
        conversation_history: str | None = None,
        consortium_id: str | None = None,
        *,
        cache: CacheMode | None = None,
    ) -> dict[str, Any]:
        """Run the consortium and return upstream's result dict.

        ``conversation_history`` (upstream's flat text history) is put before the prompt, as
        upstream's manual-context mode does. ``cache``: ``"bypass"`` by default (every call
        asks the models again, as upstream does); ``"use"`` answers repeats from the cache.
        """
        mode = self.cache if cache is None else _cache_mode(cache)
        consortium = self.consortium
        self.consortium_id = consortium_id or str(uuid.uuid4())
        text = f"{conversation_history}\n\n{prompt}" if conversation_history else prompt
        result, geometry = _run_blocking(self._run(consortium, text, mode))
        self.last_result = result
        no_arbiter = self.config.arbiter is None
        out = to_upstream_dict(
            result,
            consortium_id=self.consortium_id,
            original_prompt=prompt,
            config=self.config.to_dict(),
            no_arbiter=no_arbiter,
            geometry=geometry,
        )
        self.iteration_history = iteration_dicts(result, no_arbiter=no_arbiter, geometry=geometry)
        if consortium.gateway.log_to_llm and llm_logging_on():
            record_upstream_run(result, out, config_name=self.config_name)
        return out

    async def _run(
        self, consortium: Consortium, text: str, cache: CacheMode
    ) -> tuple[RunResult, dict[int, dict[str, Any]]]:
        result = await consortium.run(text, cache=cache)
        if self._embedder is None:
            return result, {}
        return result, await iteration_geometry(result, self._embedder)

    def get_embedding_service(self) -> Any:
        """Upstream's embedding service for this config's ``embedding_backend`` (imports
        llm_consortium, which must be installed with its embedding extras)."""
        from llm_consortium.embeddings.service import create_embedding_service

        return create_embedding_service(self.config)


CompatOrchestrator = ConsortiumOrchestrator
"""The name this class had before it was renamed to upstream's."""


def _cache_mode(cache: Any) -> CacheMode:
    if cache not in ("use", "bypass", "refresh"):
        raise ValueError(f"cache: expected 'use', 'bypass' or 'refresh' (got {cache!r})")
    mode: CacheMode = cache
    return mode


def _run_blocking(work: Coroutine[Any, Any, _T]) -> _T:
    """Run to the end; inside a running event loop (Jupyter) in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def create_consortium(
    models: Any,
    arbiter: str | None = None,
    confidence_threshold: float = 0.8,
    max_iterations: int = 3,
    minimum_iterations: int = 1,
    system_prompt: str | None = None,
    judging_method: str = "default",
    manual_context: bool = False,
    strategy: str = "default",
    strategy_params: dict[str, Any] | None = None,
    config_name: str | None = None,
    embedding_backend: str | None = None,
    embedding_model: str | None = None,
    **settings: Any,
) -> ConsortiumOrchestrator:
    """``llm_consortium.create_consortium`` with the same arguments, run by our engine.

    Extra keyword arguments are our own config settings (``mode``, ``member_options`` …) and
    the orchestrator's (``gateway``, ``store``, ``sinks``, ``cache``). Nothing is called and
    no model is looked up until the first ``orchestrate()``.
    """
    extra = {k: settings.pop(k) for k in (*_ENGINE_ARGS, "cache") if k in settings}
    config = ConsortiumConfig(
        models=parse_models(models) if not isinstance(models, Mapping) else models,
        arbiter=arbiter,
        confidence_threshold=confidence_threshold,
        max_iterations=max_iterations,
        minimum_iterations=minimum_iterations,
        system_prompt=system_prompt,
        judging_method=judging_method,
        manual_context=manual_context,
        strategy=strategy,
        strategy_params=strategy_params,
        embedding_backend=embedding_backend,
        embedding_model=embedding_model,
        **settings,
    )
    return ConsortiumOrchestrator(config, config_name=config_name, **extra)
