"""The public entry point of the engine: :class:`Consortium`, a config plus a gateway.

``consortium.stream(prompt)`` returns a :class:`~consortium_lab.engine.run.Run`, an async
iterator of :mod:`~consortium_lab.engine.events`; ``await consortium.run(prompt)`` folds it into
a :class:`~consortium_lab.engine.result.RunResult`. Sinks (the run log, the CLI printer, the
widget) receive the same events; the engine itself never touches SQLite, widgets or HTTP: the
run log is opened through the ``open_run_log`` hook (:mod:`~consortium_lab.engine.hookspecs`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from consortium_lab.config.consortium import (
    STORED,
    ConsortiumConfig,
    check_setting_names,
    check_strategy,
    parse_models,
)
from consortium_lab.config.consortium import check_models as _check_models
from consortium_lab.config.options import check_config_options
from consortium_lab.engine.conversation import Conversation
from consortium_lab.engine.plugins import resolve_run_log
from consortium_lab.engine.result import RunResult
from consortium_lab.engine.run import Run, Sink
from consortium_lab.engine.vote import Extractor
from consortium_lab.gateway.calls import CacheMode
from consortium_lab.gateway.core import Gateway

if TYPE_CHECKING:
    from consortium_lab.gateway.pricing import Estimate

__all__ = ["Consortium", "Conversation", "Run", "Sink"]


class Consortium:
    """Several models answering one prompt, an arbiter synthesizing, iterating to a threshold.

    Build it from a :class:`ConsortiumConfig` or from keyword arguments::

        Consortium(models=["gpt-4o-mini:2", "claude-3.5-haiku"], arbiter="gpt-4o",
                   confidence_threshold=0.8, max_iterations=3)

    Args:
        config: a config (or a dict of one); keyword settings override its fields.
        gateway: the :class:`Gateway` every model call goes through (a default one if
        None).
        store: the run log: a :class:`~consortium_lab.engine.hookspecs.RunLog` (a ``RunStore``), a
            path, ``None`` for the default per-user file, or ``False`` to keep no log. A path
            or ``None`` is opened by the ``open_run_log`` plugin hook (the package registers
            ``RunStore``), so the engine never imports the sinks.
        check_models: verify that every model exists and is usable, and that every member's
            and the arbiter's options are ones its model takes, before running.
        sinks: extra callables that receive every event.
        extractor: vote mode's answer key: a callable from a member's parsed answer to the
            string its vote counts under (``None`` abstains); default
            :func:`~consortium_lab.engine.vote.default_extractor` (whitespace and case
            normalised). An evaluation passes its scorer's extractor here.
        **settings: any :class:`ConsortiumConfig` field; ``models`` may be ``model:count`` strings.
    """

    def __init__(
        self,
        config: ConsortiumConfig | Mapping[str, Any] | None = None,
        *,
        gateway: Gateway | None = None,
        store: Any = None,
        check_models: bool = True,
        sinks: Sequence[Sink] = (),
        extractor: Extractor | None = None,
        **settings: Any,
    ) -> None:
        base = (
            config.to_dict()
            if isinstance(config, ConsortiumConfig)
            else dict(config)
            if config is not None
            else {}
        )
        check_setting_names(settings)
        if "models" in settings and not isinstance(settings["models"], Mapping):
            settings["models"] = parse_models(settings["models"])
        self.config = ConsortiumConfig.model_validate({**base, **settings}, context=STORED)
        check_strategy(self.config.strategy)
        self.gateway = gateway or Gateway()
        if check_models:
            _check_models(self.config, also_known=self.gateway.group_names)
            check_config_options(self.config)
        self._store_arg = store
        self._store: Any = None
        self.sinks = list(sinks)
        self.extractor = extractor

    # -- public API -----------------------------------------------------------------------
    @property
    def store(self) -> Any:
        """The run log this consortium writes to (None when logging is off)."""
        if self._store is None and self._store_arg is not False:
            self._store = resolve_run_log(self._store_arg)
        return self._store

    def stream(
        self,
        prompt: str,
        *,
        conversation: Conversation | None = None,
        cache: CacheMode = "use",
        user: str | None = None,
        sample: str | None = None,
    ) -> Run:
        """Start a run; iterate the returned :class:`Run` for its events.

        ``cache``: ``"use"`` cached answers (the default), ``"bypass"`` the cache, or
        ``"refresh"`` it (ask again and store the new answers). ``user``: the identity the
        gateway applies quotas and cache separation to (default: the gateway's own).
        ``sample``: a name that makes this run a distinct repeated sample (in every call's
        cache key and seed), as an evaluation's ``--samples`` does.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt: expected a non-empty string (got {prompt!r})")
        if cache not in ("use", "bypass", "refresh"):
            raise ValueError(f"cache: expected 'use', 'bypass' or 'refresh' (got {cache!r})")
        return Run(self, prompt, conversation, cache=cache, user=user, sample=sample)

    async def run(
        self,
        prompt: str,
        *,
        conversation: Conversation | None = None,
        cache: CacheMode = "use",
        user: str | None = None,
        sample: str | None = None,
    ) -> RunResult:
        """Run to the end and return the result (same arguments as :meth:`stream`)."""
        run = self.stream(prompt, conversation=conversation, cache=cache, user=user, sample=sample)
        async with run:
            async for _ in run:
                pass
        return run.result

    def run_sync(self, prompt: str, **kwargs: Any) -> RunResult:
        """Blocking :meth:`run` for scripts. Inside a running event loop (Jupyter) use
        ``await consortium.run(...)`` instead."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(prompt, **kwargs))
        raise RuntimeError(
            "run_sync() cannot run inside an event loop that is already running (as in Jupyter):"
            " use `await consortium.run(prompt)` instead."
        )

    def estimate(self, prompt: str) -> Estimate:
        """The most this consortium can spend on ``prompt`` before it runs: "about N calls,
        ~$X at most", from the output caps and the gateway's price table (the packaged,
        operator-editable table when the gateway has none)."""
        from consortium_lab.gateway.pricing import PriceTable, estimate

        prices = self.gateway.prices if self.gateway.prices is not None else PriceTable.load()
        return estimate(self.config, prompt, prices)

    def conversation(self) -> Conversation:
        """A new multi-turn conversation in which each member keeps its own history."""
        return Conversation(self)
