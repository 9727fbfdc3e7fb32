"""``ChatWidget``: the consortium chat as one composite anywidget.

The widget renders the engine's event stream and holds no orchestration logic of its own:
asking runs ``Consortium.stream(...)`` through a
:class:`~consortium_lab.engine.consortium.Conversation` as an asyncio task on the kernel's
running event loop, and every event goes to the front end.

State
    Durable state lives in synced traitlets, so a view rendered again in the same kernel
    rebuilds the whole conversation from them: ``turns`` (finished turns), ``live_turn`` (the
    turn being run, ``{}`` when idle), ``config``, ``models``, ``saved_configs``,
    ``past_runs``, ``status``, ``error``, ``conversation_id`` and ``chart_specs``. A turn is
    ``RunResult.to_dict()`` plus a ``ui`` key (:func:`~.turns.turn_view`). Traits are updated
    only on structural events (never per token).

Messages
    Token deltas are coalesced into at most :data:`~.batching.MAX_MESSAGES_PER_SECOND`
    ``events`` messages a second (:mod:`.batching`). Every custom message either way is one of
    the pydantic models of :mod:`.messages`, the one schema of the protocol; the page's
    messages are answered by :mod:`.handlers`, the run log is read back by :mod:`.history`.

See ``docs/widget.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import anywidget
import traitlets as t
from pydantic import BaseModel

from consortium_lab import configs as saved_configs_store
from consortium_lab.config import catalog
from consortium_lab.config.consortium import ConsortiumConfig, check_models
from consortium_lab.engine.consortium import Consortium, Conversation, Run
from consortium_lab.engine.conversation import lineage
from consortium_lab.engine.events import ArbiterDelta, Event, MemberDelta, RunFailed, RunFinished
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.calls import CacheMode
from consortium_lab.gateway.pricing import Estimate
from consortium_lab.widget import branching, history
from consortium_lab.widget.assets import bundle
from consortium_lab.widget.batching import DELTA_KINDS, DeltaBatcher, event_payload, snapshot
from consortium_lab.widget.chart_specs import chart_specs, threshold_key
from consortium_lab.widget.handlers import FrontendHandlers, friendly, log_failure
from consortium_lab.widget.messages import Events, KernelReady, StreamEvent
from consortium_lab.widget.mydata import data_owner
from consortium_lab.widget.settings import (
    check_llm_options,
    model_entry,
)
from consortium_lab.widget.turns import HighlightCache, turn_view

__all__ = ["ChatWidget"]

logger = logging.getLogger(__name__)


class ChatWidget(anywidget.AnyWidget):
    """The consortium chat: model picker, live member panes, synthesis, charts, run log.

    Args:
        config: a :class:`ConsortiumConfig`, a dict of one, or a saved config's name. When
            None: the config of the conversation restored from the run log, else the
            offline demo models.
        consortium: use this :class:`Consortium` (its config, gateway and run log).
        gateway: the :class:`~consortium_lab.gateway.core.Gateway` for model calls.
        store: the run log (a ``RunStore``, a path, ``None`` for the per-user file).
        restore: rebuild the last conversation of the run log (what a reloaded page shows).

    Drive it from code with ``result = await widget.ask("...")``; ``widget.conversation`` is
    the engine's :class:`Conversation` and ``widget.results`` its :class:`RunResult` list.
    """

    _esm, _css = bundle("widget")

    turns = t.List(t.Dict(), help="Finished turns: RunResult.to_dict() plus 'ui'.").tag(sync=True)
    live_turn = t.Dict(help="The turn being run ({} when idle).").tag(sync=True)
    config = t.Dict(help="The consortium config the next prompt runs with.").tag(sync=True)
    models = t.List(t.Dict(), help="Models usable here: id, label, demo, aliases.").tag(sync=True)
    saved_configs = t.List(t.Dict(), help="Saved configs: name, ok, error, config.").tag(sync=True)
    past_runs = t.List(t.Dict(), help="Recent runs of the run log, newest first.").tag(sync=True)
    status = t.Enum(("idle", "running", "cancelling"), "idle", help="What the chat is doing.").tag(
        sync=True
    )
    error = t.Unicode("", help="The last error to show (config or run).").tag(sync=True)
    conversation_id = t.Unicode("", help="The id of the conversation shown.").tag(sync=True)
    chart_specs = t.Dict(help="Vega-Lite specs of the live charts (named datasets).").tag(sync=True)
    user_name = t.Unicode(help="Whose data this is (typed to delete it).").tag(sync=True)
    retention = t.Dict(help="Run-log retention: max (site), chosen, error.").tag(sync=True)

    def __init__(
        self,
        config: ConsortiumConfig | Mapping[str, Any] | str | None = None,
        consortium: Consortium | None = None,
        gateway: Any = None,
        store: Any = None,
        *,
        restore: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.user_name = self.user_name or data_owner()
        self._gateway = gateway if gateway is not None else getattr(consortium, "gateway", None)
        self._store_arg = store
        self._highlights = HighlightCache()
        self._results: list[RunResult] = []
        self._run: Run | None = None
        self._task: asyncio.Task[RunResult] | None = None
        self._seq = 0
        self._batcher = DeltaBatcher(self._send_batch)
        self._live_result: RunResult | None = None
        self._streams: dict[tuple[Any, ...], str] = {}
        self._pristine = True
        self._cancel_requested = False
        self._restore_on_ready = restore
        self.messages_sent = 0
        self._handlers = FrontendHandlers(self)
        self.on_msg(self._on_custom_msg)
        self.refresh_models()

        if consortium is not None:
            self._consortium = consortium
        else:
            self._consortium = self._build(
                history.initial_config(config, restore, self._store_arg, self.models)
            )
        self._conversation: Conversation = self._consortium.conversation()
        self.config = self._consortium.config.to_dict()
        if restore:
            self._restore_latest(keep_config=config is not None or consortium is not None)
        self.conversation_id = self._conversation.id
        self.refresh_saved_configs()
        self.refresh_past_runs()

    @t.observe("config", "turns")
    def _ensure_chart_specs(self, _change: Any = None) -> None:
        wanted = {threshold_key(self.config.get("confidence_threshold", 0.8))}
        wanted |= {turn["ui"]["confidence_chart"] for turn in self.turns}
        if not wanted <= set(self.chart_specs.get("confidence", {})):
            self.chart_specs = chart_specs(sorted(float(w) for w in wanted))

    # -- public API --------------------------------------------------------------------------
    @property
    def consortium(self) -> Consortium:
        """The consortium the next prompt runs with."""
        return self._consortium

    @property
    def conversation(self) -> Conversation:
        """The engine's :class:`Conversation` this chat is."""
        return self._conversation

    @property
    def results(self) -> list[RunResult]:
        """The :class:`RunResult` of every turn shown, oldest first."""
        return list(self._results)

    @property
    def store(self) -> Any:
        """The run log (``RunStore``) or None when logging is off."""
        return self._consortium.store

    async def ask(self, prompt: str) -> RunResult:
        """Ask ``prompt`` as the next turn; returns its result (also in :attr:`results`)."""
        task = self._start(prompt)
        return await asyncio.shield(task)

    async def resend(
        self, run_id: str, mode: branching.ResendMode = "regenerate", prompt: str | None = None
    ) -> RunResult:
        """Ask run ``run_id``'s turn again on a new branch of its conversation (the old turn
        is kept): ``regenerate`` (its prompt and settings, cache bypassed), ``retry`` or
        ``edit`` (with ``prompt``). See :mod:`.branching`."""
        return await asyncio.shield(self._resend(run_id, mode, prompt))

    async def cancel(self) -> None:
        """Stop the run in progress (what completed is kept; its status is ``cancelled``)."""
        task = self._task
        if task is None or task.done():
            return
        self.status = "cancelling"
        self._cancel_requested = True
        run = self._run
        if run is not None:
            # The engine closes every in-flight call; the run's next event is
            # run_finished(cancelled), which reaches the front end like any other.
            await run.cancel()
        else:  # not started yet: cancelling the task is the only way
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)

    async def wait(self) -> None:
        """Wait until no run is in progress (for scripts and tests)."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(task)
        await self._batcher.drain()

    def new_chat(self) -> None:
        """Start a new conversation (a run in progress is cancelled)."""
        self._pristine = False
        if self._run is not None and self.status != "idle":
            self._spawn(self.cancel())
        self._conversation = self._consortium.conversation()
        self.conversation_id = self._conversation.id
        self._results = []
        self.turns = []
        self.live_turn = {}

    def set_config(self, config: ConsortiumConfig | Mapping[str, Any]) -> ConsortiumConfig:
        """Use ``config`` from the next prompt on (validated, models checked)."""
        if isinstance(config, Mapping):
            config = ConsortiumConfig.model_validate(dict(config))
        check_models(config)
        check_llm_options(config)
        self._consortium = self._build(config)
        self._conversation.consortium = self._consortium
        self.config = config.to_dict()
        self.error = ""
        return config

    def estimate(self, prompt: str) -> Estimate:
        """What asking ``prompt`` next can take at most: calls and cost
        (:meth:`Consortium.estimate`; ``.summary`` reads "about 12 calls, ~$0.04 at most")."""
        return self._consortium.estimate(prompt)

    def open_conversation(self, conversation_id: str) -> None:
        """Show (and continue) a conversation of the run log."""
        self._pristine = False
        self._restore(conversation_id)

    def refresh_models(self) -> None:
        """Re-read the models ``llm`` can use here."""
        self.models = [model_entry(m) for m in catalog.list_models()]

    def refresh_saved_configs(self) -> None:
        """Re-read the saved-config store."""
        try:
            saved = saved_configs_store.list()
        except Exception as exc:  # an unreadable store must not break the chat
            logger.warning("saved configs: %s", exc)
            saved = []
        self.saved_configs = [
            {"name": s.name, "ok": s.ok, "error": s.error, "config": s.raw} for s in saved
        ]

    def refresh_past_runs(self) -> None:
        """Re-read the recent runs of the run log."""
        store = self.store
        if store is None:
            self.past_runs = []
            return
        live = self._live_result
        self.past_runs = history.past_runs(store, live.run_id if live else None)

    def export_run(self, run_id: str, format: str = "json") -> str:
        """The run as the export text (``json`` or ``markdown``)."""
        from consortium_lab import runs

        store = self.store
        if store is None:
            raise KeyError(f"no run log: cannot export {run_id!r}")
        return runs.export(run_id, format, path=store.path)

    def delete_run(self, run_id: str) -> None:
        """Remove a run from the run log (and from the chat shown)."""
        from consortium_lab import runs

        store = self.store
        if store is None:
            raise KeyError(f"no run log: cannot delete {run_id!r}")
        runs.delete(run_id, path=store.path)
        self._results = [r for r in self._results if r.run_id != run_id]
        self.turns = [turn for turn in self.turns if turn["ui"]["run_id"] != run_id]
        self.refresh_past_runs()

    # -- building and restoring ------------------------------------------------------------------
    def _build(self, config: ConsortiumConfig) -> Consortium:
        return Consortium(config, gateway=self._gateway, store=self._store_arg)

    def _restore_latest(self, *, keep_config: bool) -> None:
        store = self.store
        if store is None:
            return
        conversation_id = store.latest_conversation_id()
        if conversation_id is not None:
            self._restore(conversation_id, keep_config=keep_config)

    def _restore(self, conversation_id: str, *, keep_config: bool = True) -> None:
        store = self.store
        if store is None:
            raise KeyError("no run log")
        rows = history.conversation_rows(store, lineage(store, conversation_id))
        if not rows:
            raise KeyError(f"no conversation {conversation_id!r} in the run log")
        if not keep_config:
            with contextlib.suppress(Exception):
                latest = ConsortiumConfig.model_validate(rows[-1]["config"])
                check_models(latest)
                self._consortium = self._build(latest)
                self.config = latest.to_dict()
        self._conversation = Conversation.from_log(conversation_id, self._consortium, store=store)
        self.conversation_id = conversation_id
        self._show_rows(rows)
        if self._live_result is None:
            self.live_turn = {}

    def _show_rows(self, rows: list[dict[str, Any]]) -> None:
        live = self._live_result
        loaded = (history.load_result(self.store, r, live.run_id if live else None) for r in rows)
        self._results = [r for r in loaded if r is not None]
        self.turns = [turn_view(r, highlights=self._highlights) for r in self._results]

    # -- running ---------------------------------------------------------------------------------
    def _resend(self, run_id: str, mode: str, prompt: str | None = None) -> asyncio.Task[RunResult]:
        if self._task is not None and not self._task.done():
            raise RuntimeError("a run is in progress: stop it or wait for it to finish")
        store = self.store
        plan = branching.plan_resend(store, run_id, mode, prompt)
        self.set_config(plan.config)
        self._conversation = Conversation.branch(
            plan.conversation_id, plan.turn, self._consortium, store=store
        )
        self.conversation_id = self._conversation.id
        self._show_rows(
            history.conversation_rows(
                store, branching.branch_chain(store, plan.conversation_id, plan.turn)
            )
        )
        return self._start(plan.prompt, cache=plan.cache)

    def _start(self, prompt: str, *, cache: CacheMode = "use") -> asyncio.Task[RunResult]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        if self._task is not None and not self._task.done():
            raise RuntimeError("a run is in progress: stop it or wait for it to finish")
        self._pristine = False
        self.error = ""
        self.status = "running"
        self._task = asyncio.ensure_future(self._run_turn(prompt, cache))
        return self._task

    async def _run_turn(self, prompt: str, cache: CacheMode) -> RunResult:
        run = self._conversation.stream(prompt, cache=cache)
        self._run = run
        self._streams = {}
        self._cancel_requested = False
        try:
            async with run:
                async for event in run:
                    self._on_event(run, event)
        except asyncio.CancelledError:
            if not self._cancel_requested:
                self._finish(run)
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            self._on_cancelled(run)
        except Exception as exc:
            logger.exception("chat run failed")
            self.error = f"The run failed: {friendly(exc)}"
            await self._batcher.drain()
            self._finish(run)
            raise
        await self._batcher.drain()
        self._finish(run)
        return run.result

    def _on_cancelled(self, run: Run) -> None:
        """The engine recorded run_finished(cancelled) while unwinding: pass it on."""
        with contextlib.suppress(RuntimeError):
            result = run.result
            result.status = "cancelled"
            self._batcher.add(
                event_payload(
                    RunFinished(
                        run_id=result.run_id,
                        iterations=len(result.iterations),
                        status="cancelled",
                    )
                )
            )

    def _on_event(self, run: Run, event: Event) -> None:
        if self._live_result is None:
            self._live_result = run.result
        if isinstance(event, (MemberDelta, ArbiterDelta)):
            key = (
                event.kind,
                event.model,
                getattr(event, "instance", None),
                event.iteration,
                event.stage,
                getattr(event, "channel", "text"),
            )
            self._streams[key] = self._streams.get(key, "") + event.text
        elif event.kind in ("member_done", "member_failed"):
            for key in [k for k in self._streams if k[1:5] == self._member_key(event)]:
                del self._streams[key]
        elif event.kind == "synthesis":
            for key in [k for k in self._streams if k[0] == "arbiter_delta"]:
                del self._streams[key]
        if isinstance(event, RunFailed):
            self.error = f"The run failed: {event.reason}"
        self._batcher.add(event_payload(event))

    @staticmethod
    def _member_key(event: Any) -> tuple[Any, ...]:
        return (event.model, event.instance, event.iteration, event.stage)

    def _finish(self, run: Run) -> None:
        with contextlib.suppress(RuntimeError):
            result = run.result
            if result.status == "running":
                result.status = "cancelled"
            self._results = [r for r in self._results if r.run_id != result.run_id] + [result]
            self.turns = [
                *[turn for turn in self.turns if turn["ui"]["run_id"] != result.run_id],
                turn_view(result, highlights=self._highlights),
            ]
        self._run = None
        self._live_result = None
        self._streams = {}
        self.live_turn = {}
        self.status = "idle"
        with contextlib.suppress(Exception):
            self.refresh_past_runs()

    def _send_batch(self, items: list[dict[str, Any]]) -> None:
        live = self._live_result
        structural = any(i["kind"] not in DELTA_KINDS for i in items)
        if live is not None and structural and self._run is not None:
            last = items[-1]["kind"]
            phase = "finished" if last in ("run_finished", "run_failed") else "running"
            self.live_turn = turn_view(live, phase=phase, highlights=self._highlights)
        self._seq += 1
        self._post(Events(seq=self._seq, events=[StreamEvent(**item) for item in items]))

    def _post(self, message: BaseModel) -> None:
        """Send one :data:`~.messages.KernelMessage` to the page."""
        self.messages_sent += 1
        self.send(message.model_dump(mode="json", exclude_unset=True))

    # -- messages from the front end -------------------------------------------------------------
    def _on_custom_msg(self, _widget: Any, content: Any, buffers: Any = None) -> None:
        self.handle_message(content)

    def handle_message(self, content: Any) -> None:
        """Handle one message from the front end (a :data:`~.messages.FrontendMessage`; see
        :mod:`.handlers`). Never blocks: a run starts as a task on the running event loop."""
        self._handlers.handle(content)

    def _spawn(self, coro: Any) -> None:
        asyncio.ensure_future(coro).add_done_callback(log_failure)

    def _on_ready(self) -> None:
        """A view rendered: refresh what it lists, and catch it up with a live run."""
        self.refresh_models()
        self.refresh_saved_configs()
        if self._restore_on_ready and self._pristine and self._live_result is None:
            # A preheated kernel built this widget before the page was asked for: show the
            # run log as it is now (unless asked to start a new conversation).
            self._restore_latest(keep_config=True)
            self.conversation_id = self._conversation.id
        self.refresh_past_runs()
        if self._live_result is not None:
            self._batcher.flush()
            live = self._live_result
            self._post(snapshot(live.run_id if live else None, self._streams))
        self._post(KernelReady())
