"""``ChatWidget``: the consortium chat as one composite anywidget.

The widget renders the engine's event stream and holds no orchestration logic of its own:
asking runs ``Consortium.stream(...)`` through a
:class:`~consortium_lab.engine.consortium.Conversation`
as an asyncio task on the kernel's running event loop, and every event goes to the front end.

State
    Durable state lives in synced traitlets, so a view rendered again in the same kernel
    rebuilds the whole conversation from them: ``turns`` (finished turns), ``live_turn`` (the
    turn being run, ``{}`` when idle), ``config``, ``models``, ``saved_configs``,
    ``past_runs``, ``status``, ``error``, ``conversation_id`` and ``chart_specs``. A turn is
    ``RunResult.to_dict()`` plus a ``ui`` key (member order, phase, agreement highlights,
    chart rows). Traits are updated only on structural events (never per token).

Token deltas
    ``member_delta`` / ``arbiter_delta`` text is buffered per (kind, model, instance,
    iteration, stage, channel) and flushed at most :data:`MAX_MESSAGES_PER_SECOND` times a
    second as ONE custom message ``{"type": "events", "seq", "events": [...]}`` carrying the
    merged deltas and every other event, in stream order. Nothing is dropped; on
    ``member_done`` the front end replaces the streamed text with the full text.

Messages (front end -> kernel, ``{"type": ..., "req": optional id}``)
    ``ready``, ``ask {prompt}``, ``cancel``, ``new_chat``, ``set_config {config, merge}``
    (with ``merge``, ``member_options`` / ``member_system_prompts`` merge per member),
    ``save_config {name}``, ``load_config {name}``, ``clone_config {source, target}``,
    ``remove_config {name}``, ``open_run {id}``, ``export {id, format}``, ``delete_run {id}``,
    ``estimate {prompt}``.

Messages (kernel -> front end)
    ``events`` (above), ``snapshot {run_id, streams}`` (the live run's streamed text so far,
    sent to a view that says ``ready``), ``download {filename, mime, content}``,
    ``estimate {req, summary, calls, min_calls, max_cost, currency, unpriced_models}``
    (``summary`` empty and ``error`` set when it could not be estimated) and
    ``notice {level, message, req}``.

See ``docs/widget.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from consortium_lab import configs as saved_configs_store
from consortium_lab.analysis import agreement as analysis
from consortium_lab.config import catalog
from consortium_lab.config.consortium import ConsortiumConfig, check_models
from consortium_lab.engine.consortium import Consortium, Conversation, Run
from consortium_lab.engine.events import ArbiterDelta, Event, MemberDelta, RunFailed, RunFinished
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.pricing import Estimate

__all__ = [
    "MAX_MESSAGES_PER_SECOND",
    "ChatWidget",
    "DeltaBatcher",
    "VegaChart",
    "check_llm_options",
    "turn_view",
]

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_SECOND = 20
"""The most ``events`` messages a widget sends per second while a run streams."""

STATIC = Path(__file__).resolve().parent.parent / "static"
PAST_RUNS_LIMIT = 50
WORDS = "words"
WORD_CLOUD_TOP = 40
"""The most words a member's word cloud shows."""
DEMO_MEMBERS = ("demo-analyst", "demo-optimist", "demo-skeptic")
DEMO_ARBITER = "demo-arbiter"

_MISSING_BUNDLE = """
export default {
  render({ el }) {
    el.textContent = "consortium_lab: the widget's front end is not built. Run `npm ci && "
      + "npm run build` in widgets/ (pip install does it through the build hook).";
  },
};
"""


def _asset(name: str) -> Path | str:
    """The built front-end file, or a stand-in that says the bundle is missing."""
    path = STATIC / name
    if path.is_file():
        return path
    return _MISSING_BUNDLE if name.endswith(".js") else ""


# -- coalescing ---------------------------------------------------------------------------------


def _delta_key(event: dict[str, Any]) -> tuple[Any, ...]:
    return (
        event["kind"],
        event["model"],
        event.get("instance"),
        event["iteration"],
        event.get("stage"),
        event.get("channel", "text"),
    )


_DROP = {"schema_version"}


def event_payload(event: Event) -> dict[str, Any]:
    """An event as the front end receives it (JSON-ready; deltas without their time)."""
    data = event.model_dump(mode="json", exclude=_DROP)
    if isinstance(event, (MemberDelta, ArbiterDelta)):
        data.pop("at", None)
    return data


class DeltaBatcher:
    """Collects event payloads and hands them to ``flush_to`` as one list at most
    ``rate`` times a second. Consecutive and non-consecutive deltas of the same stream key
    pending in one batch are merged into the first one (a stream's deltas always precede its
    ``member_done``, whose key differs only by kind, so order is kept)."""

    def __init__(
        self,
        flush_to: Callable[[list[dict[str, Any]]], None],
        *,
        rate: float = MAX_MESSAGES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush_to = flush_to
        self.interval = 1.0 / rate
        self._clock = clock
        self._items: list[dict[str, Any]] = []
        self._open: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._last = -1e9
        self._handle: asyncio.Handle | None = None
        self.flushes = 0

    @property
    def pending(self) -> bool:
        return bool(self._items)

    def add(self, item: dict[str, Any]) -> None:
        if item["kind"] in ("member_delta", "arbiter_delta"):
            key = _delta_key(item)
            existing = self._open.get(key)
            if existing is not None:
                existing["text"] += item["text"]
                return
            item = dict(item)
            self._open[key] = item
        self._items.append(item)
        self._schedule()

    def _schedule(self) -> None:
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (plain synchronous use): flush now
            self.flush()
            return
        delay = max(0.0, self._last + self.interval - self._clock())
        self._handle = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Send what is pending now (also cancels a scheduled flush)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._items:
            return
        items, self._items, self._open = self._items, [], {}
        self.flushes += 1
        try:
            self._flush_to(items)
        finally:
            # Measured after sending, so slow work inside a flush never shortens the gap.
            self._last = self._clock()

    async def drain(self) -> None:
        """Wait for the rate limit, then send what is pending."""
        if not self._items:
            return
        wait = self._last + self.interval - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self.flush()


# -- turn views -----------------------------------------------------------------------------------


def _utf16(text: str, offset: int) -> int:
    """A Python (code point) offset into ``text`` as a JavaScript (UTF-16) offset."""
    prefix = text[:offset]
    return offset + sum(1 for ch in prefix if ord(ch) > 0xFFFF)


def _js_spans(text: str, spans: list[analysis.Span]) -> list[dict[str, Any]]:
    wide = any(ord(ch) > 0xFFFF for ch in text)
    out = []
    for span in spans:
        data = span.to_dict()
        if wide:
            data["start"], data["end"] = _utf16(text, span.start), _utf16(text, span.end)
        out.append(data)
    return out


def chart_rows(result: RunResult) -> dict[str, list[dict[str, Any]]]:
    """The rows of the named chart datasets of one run (see :mod:`consortium_lab.analysis.charts`):
    ``confidence``, ``member_confidence`` and ``consensus``."""
    from consortium_lab.analysis import charts

    return {
        charts.CONFIDENCE: charts.confidence_rows(result),
        charts.MEMBER_CONFIDENCE: charts.member_confidence_rows(result),
        charts.CONSENSUS: charts.consensus_rows(result),
    }


def threshold_key(threshold: Any) -> str:
    """How a confidence threshold names its confidence chart in ``chart_specs``."""
    return f"{float(threshold or 0):.4g}"


def chart_specs(thresholds: Any = (0.8,)) -> dict[str, Any]:
    """The live charts' Vega-Lite specs, built with :mod:`consortium_lab.analysis.charts`; they
    read the
    named datasets and carry no rows. ``confidence`` maps each threshold (see
    :func:`threshold_key`) to its chart, since the threshold rule is part of the spec."""
    from consortium_lab.analysis import charts

    return {
        "confidence": {
            threshold_key(th): charts.spec(
                charts.confidence_chart(float(th), width="container", height=160)
            )
            for th in thresholds
        },
        "member_confidence": charts.spec(
            charts.member_confidence_chart(width="container", height=160)
        ),
        "consensus": charts.spec(charts.consensus_meter(width="container", height=22)),
        # One layout per embed: the front end gives each member's cloud its own rows.
        WORDS: charts.spec(charts.word_cloud()),
    }


def _member_order(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    models = config.get("models") or {}
    return [
        {"model": model, "instance": i, "key": analysis.member_key(model, i)}
        for model, count in models.items()
        for i in range(1, int(count) + 1)
    ]


class _HighlightCache:
    """Agreement spans per (run, iteration, answers done): computed once, not per flush."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def iteration(self, run_id: str, it: Any) -> dict[str, Any]:
        done = [m for m in it.answers if m.status == "done"]
        synthesis = it.synthesis
        key = (run_id, it.number, len(done), synthesis is not None)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        texts = analysis.member_texts(done)
        spans = analysis.highlight_agreement(texts) if len(texts) >= 2 else {}
        data: dict[str, Any] = {
            "members": {k: _js_spans(texts[k], v) for k, v in spans.items()},
        }
        if synthesis is not None and synthesis.refinement_areas:
            data["synthesis"] = _js_spans(
                synthesis.synthesis,
                analysis.highlight_refinement_areas(
                    synthesis.synthesis, synthesis.refinement_areas
                ),
            )
        self._put(key, data)
        return data

    def words(self, run_id: str, it: Any, order: Mapping[str, int]) -> list[dict[str, Any]]:
        """Rows of dataset ``words`` (:func:`charts.word_rows`) for the answers of one
        iteration, in config order: laid out once per (run, iteration, answers done)."""
        from consortium_lab.analysis import charts

        done = [m for m in it.answers if m.status == "done"]
        key = ("words", run_id, it.number, len(done))
        cached = self._cache.get(key)
        if cached is not None:
            return list(cached["rows"])
        done.sort(key=lambda m: (order.get(m.model, len(order)), m.model, m.instance))
        rows = charts.word_rows(analysis.member_texts(done), top=WORD_CLOUD_TOP)
        self._put(key, {"rows": rows})
        return list(rows)

    def _put(self, key: tuple[Any, ...], data: dict[str, Any]) -> None:
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[key] = data


def _words_iteration(result: RunResult, *, live: bool) -> Any:
    """The iteration whose answers the word clouds show: a finished turn's last iteration
    with answers; a live turn's latest iteration in which every member has answered (so
    a cloud never shows half the members), or None."""
    members = len(_member_order(result.config))
    for it in reversed(result.iterations):
        answers = it.answers
        if not answers:
            continue
        if not live or len(answers) >= members:
            return it
    return None


def turn_view(
    result: RunResult,
    *,
    phase: str | None = None,
    highlights: _HighlightCache | None = None,
) -> dict[str, Any]:
    """One turn as the widget's traits hold it: ``result.to_dict()`` plus ``ui`` (member
    order, status, phase, per-iteration agreement highlights, chart rows, threshold).

    ``ui.charts.words`` holds the word-cloud rows (:func:`charts.word_rows`) of the members'
    answers of the last iteration (of a live turn: of its latest iteration every member has
    answered; ``[]`` until then)."""
    highlights = highlights or _HighlightCache()
    data = result.to_dict()
    rows = chart_rows(result)
    words_it = _words_iteration(result, live=result.status == "running")
    order = {model: i for i, model in enumerate(result.models_used)}
    rows[WORDS] = [] if words_it is None else highlights.words(result.run_id, words_it, order)
    data["ui"] = {
        "run_id": result.run_id,
        "status": result.status,
        "phase": phase or result.status,
        "members": _member_order(result.config),
        "threshold": result.config.get("confidence_threshold"),
        "confidence_chart": threshold_key(result.config.get("confidence_threshold")),
        "highlights": {
            str(it.number): highlights.iteration(result.run_id, it) for it in result.iterations
        },
        "charts": rows,
        "errors": dict(result.errors),
    }
    return data


# -- per-member settings -----------------------------------------------------------------------

PER_MEMBER_FIELDS = ("member_options", "member_system_prompts")
"""Config fields keyed by member (model id or ``"model#instance"``): a ``set_config`` with
``merge`` merges them per member, and a member given ``null`` (or ``{}`` / ``""``) is
removed."""


def _merge_per_member(name: str, current: Any, patch: Any) -> dict[str, Any]:
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


def _check_member_keys(name: str, patch: Any, models: Any) -> None:
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


def _options_class(model_id: str) -> Any:
    """The ``Options`` class of an ``llm`` model, or None when ``llm`` does not know it."""
    import llm

    for get in (llm.get_async_model, llm.get_model):
        try:
            return getattr(get(model_id), "Options", None)
        except Exception:  # unknown to llm (or a plugin that fails): nothing to check against
            continue
    return None


def _options_problem(model_id: str, options: Mapping[str, Any]) -> str | None:
    from pydantic import ValidationError

    options_class = _options_class(model_id)
    if not options or options_class is None:
        return None
    try:
        options_class(**options)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
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
    if config.mode != "compare" and config.arbiter_options:
        problem = _options_problem(config.arbiter_model, config.arbiter_options)
        if problem:
            raise ValueError(f"arbiter_options ({config.arbiter_model}): {problem}")
    return config


# -- the widget -----------------------------------------------------------------------------------


def _model_entry(info: catalog.ModelInfo) -> dict[str, Any]:
    return {
        "id": info.model_id,
        "label": f"{info.model_id} (offline demo)" if info.is_demo else info.model_id,
        "demo": info.is_demo,
        "aliases": list(info.aliases),
    }


def demo_config() -> ConsortiumConfig:
    """The offline demo consortium (three demo members, the demo arbiter)."""
    return ConsortiumConfig(models=dict.fromkeys(DEMO_MEMBERS, 1), arbiter=DEMO_ARBITER)


def _friendly(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return re.sub(r"\s+For further information visit \S+", "", text) or type(exc).__name__


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

    _esm = _asset("widget.js")
    _css = _asset("widget.css")

    turns = t.List(t.Dict(), help="Finished turns: RunResult.to_dict() plus 'ui'.").tag(sync=True)
    live_turn = t.Dict(help="The turn being run ({} when idle).").tag(sync=True)
    config = t.Dict(help="The consortium config the next prompt runs with.").tag(sync=True)
    models = t.List(t.Dict(), help="Models usable here: id, label, demo, aliases.").tag(sync=True)
    saved_configs = t.List(t.Dict(), help="Saved configs: name, ok, error, config.").tag(sync=True)
    past_runs = t.List(t.Dict(), help="Recent runs of the run log, newest first.").tag(sync=True)
    status = t.Unicode("idle", help="idle | running | cancelling").tag(sync=True)
    error = t.Unicode("", help="The last error to show (config or run).").tag(sync=True)
    conversation_id = t.Unicode("").tag(sync=True)
    chart_specs = t.Dict(help="Vega-Lite specs of the live charts (named datasets).").tag(sync=True)

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
        self._gateway = gateway if gateway is not None else getattr(consortium, "gateway", None)
        self._store_arg = store
        self._highlights = _HighlightCache()
        self._results: list[RunResult] = []
        self._run: Run | None = None
        self._task: asyncio.Task[RunResult] | None = None
        self._seq = 0
        self._batcher = DeltaBatcher(self._send_batch)
        self._live_result: RunResult | None = None
        self._streams: dict[tuple[Any, ...], str] = {}
        self._pristine = True
        self._cancel_requested = False
        self.messages_sent = 0
        self.on_msg(self._on_custom_msg)
        self.refresh_models()

        if consortium is not None:
            self._consortium = consortium
        else:
            self._consortium = self._build(self._initial_config(config, restore))
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
        self.models = [_model_entry(m) for m in catalog.list_models()]

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
        rows = store.list_runs(limit=PAST_RUNS_LIMIT)
        self.past_runs = [
            {
                "id": r["id"],
                "conversation_id": r["conversation_id"],
                "turn": r["turn"],
                "prompt": (r["prompt"] or "")[:200],
                "status": self._shown_status(r["id"], r["status"]),
                "started_at": r["started_at"],
                "final_confidence": r["final_confidence"],
                "mode": r["mode"],
                "iteration_count": r["iteration_count"],
            }
            for r in rows
        ]

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

    def _initial_config(
        self, config: ConsortiumConfig | Mapping[str, Any] | str | None, restore: bool
    ) -> ConsortiumConfig:
        if isinstance(config, str):
            return saved_configs_store.get(config)
        if isinstance(config, ConsortiumConfig):
            return config
        if config is not None:
            return ConsortiumConfig.model_validate(dict(config))
        if restore:
            restored = self._latest_config()
            if restored is not None:
                return restored
        return self._default_config()

    def _latest_config(self) -> ConsortiumConfig | None:
        from consortium_lab.sinks.runlog import RunStore

        store_arg = self._store_arg
        if store_arg is False:
            return None
        store = store_arg if isinstance(store_arg, RunStore) else RunStore(store_arg)
        rows = store.list_runs(limit=1)
        if not rows:
            return None
        try:
            return check_models(ConsortiumConfig.model_validate(rows[0]["config"]))
        except Exception:
            return None

    def _default_config(self) -> ConsortiumConfig:
        ids = [m["id"] for m in self.models]
        if all(m in ids for m in (*DEMO_MEMBERS, DEMO_ARBITER)):
            return demo_config()
        if not ids:
            return demo_config()  # fails at check time with a clear "unknown model" message
        return ConsortiumConfig(models={ids[0]: 1}, arbiter=ids[0])

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
        rows = store.list_runs(conversation_id=conversation_id)
        if not rows:
            raise KeyError(f"no conversation {conversation_id!r} in the run log")
        if not keep_config:
            with contextlib.suppress(Exception):
                latest = ConsortiumConfig.model_validate(rows[0]["config"])
                check_models(latest)
                self._consortium = self._build(latest)
                self.config = latest.to_dict()
        self._conversation = Conversation.from_log(conversation_id, self._consortium, store=store)
        self.conversation_id = conversation_id
        results = []
        for row in reversed(rows):
            result = self._load_result(row)
            if result is not None:
                results.append(result)
        self._results = results
        self.turns = [turn_view(r, highlights=self._highlights) for r in results]
        if self._live_result is None:
            self.live_turn = {}

    def _shown_status(self, run_id: str, status: str) -> str:
        live = self._live_result
        if status == "running" and (live is None or live.run_id != run_id):
            return "interrupted"
        return status

    def _load_result(self, row: Mapping[str, Any]) -> RunResult | None:
        store = self.store
        events = store.get_events(row["id"])
        if not events:
            return None
        result = RunResult.from_events(events)
        status = self._shown_status(row["id"], row["status"])
        result.status = status  # type: ignore[assignment]
        if status != "running":
            result.finished_at = result.finished_at or row["finished_at"]
        if status in ("interrupted", "cancelled", "failed") and not result.error:
            result.error = row["error"] or (
                "interrupted: the page or kernel that ran it went away"
                if status == "interrupted"
                else None
            )
        return result

    # -- running ---------------------------------------------------------------------------------
    def _start(self, prompt: str) -> asyncio.Task[RunResult]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        if self._task is not None and not self._task.done():
            raise RuntimeError("a run is in progress: stop it or wait for it to finish")
        self._pristine = False
        self.error = ""
        self.status = "running"
        self._task = asyncio.ensure_future(self._run_turn(prompt))
        return self._task

    async def _run_turn(self, prompt: str) -> RunResult:
        run = self._conversation.stream(prompt)
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
            self.error = f"The run failed: {_friendly(exc)}"
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
        structural = any(i["kind"] not in ("member_delta", "arbiter_delta") for i in items)
        if live is not None and structural and self._run is not None:
            last = items[-1]["kind"]
            phase = "finished" if last in ("run_finished", "run_failed") else "running"
            self.live_turn = turn_view(live, phase=phase, highlights=self._highlights)
        self._seq += 1
        self._post({"type": "events", "seq": self._seq, "events": items})

    def _post(self, content: dict[str, Any]) -> None:
        self.messages_sent += 1
        self.send(content)

    def _snapshot(self) -> dict[str, Any]:
        live = self._live_result
        streams = [
            {
                "kind": k[0],
                "model": k[1],
                "instance": k[2],
                "iteration": k[3],
                "stage": k[4],
                "channel": k[5],
                "text": text,
            }
            for k, text in self._streams.items()
        ]
        return {"type": "snapshot", "run_id": live.run_id if live else None, "streams": streams}

    # -- messages from the front end -------------------------------------------------------------
    def _on_custom_msg(self, _widget: Any, content: Any, buffers: Any = None) -> None:
        self.handle_message(content)

    def handle_message(self, content: Any) -> None:
        """Handle one message from the front end (see the module docstring). Never blocks:
        a run starts as a task on the running event loop."""
        if not isinstance(content, Mapping):
            return
        kind = content.get("type")
        req = content.get("req")
        handler = self._handlers().get(str(kind))
        if handler is None:
            self._notice("error", f"unknown message type {kind!r}", req)
            return
        try:
            handler(content)
        except Exception as exc:
            logger.debug("message %s failed", kind, exc_info=True)
            message = _friendly(exc)
            if kind in ("set_config", "load_config"):
                self.error = f"Invalid configuration: {message}"
            self._notice("error", message, req)

    def _handlers(self) -> dict[str, Callable[[Mapping[str, Any]], object]]:
        return {
            "ready": self._msg_ready,
            "ask": lambda c: self._msg_ask(str(c.get("prompt") or "")),
            "cancel": lambda c: self._spawn(self.cancel()),
            "new_chat": lambda c: self.new_chat(),
            "set_config": self._msg_set_config,
            "save_config": self._msg_save_config,
            "load_config": self._msg_load_config,
            "clone_config": self._msg_clone_config,
            "clone": self._msg_clone_config,
            "remove_config": self._msg_remove_config,
            "remove": self._msg_remove_config,
            "open_run": self._msg_open_run,
            "export": self._msg_export,
            "delete_run": lambda c: self.delete_run(str(c.get("id"))),
            "estimate": self._msg_estimate,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(_log_failure)

    def _msg_ready(self, content: Mapping[str, Any]) -> None:
        self.refresh_models()
        self.refresh_saved_configs()
        if self._pristine and self._live_result is None:
            # A preheated kernel built this widget before the page was asked for: show the
            # run log as it is now.
            self._restore_latest(keep_config=True)
            self.conversation_id = self._conversation.id
        self.refresh_past_runs()
        if self._live_result is not None:
            self._batcher.flush()
            self._post(self._snapshot())
        self._post({"type": "ready"})

    def _msg_ask(self, prompt: str) -> None:
        task = self._start(prompt)
        task.add_done_callback(_log_failure)

    def _msg_set_config(self, content: Mapping[str, Any]) -> None:
        given = content.get("config") or {}
        if not isinstance(given, Mapping):
            raise ValueError(f"config must be an object (got {type(given).__name__})")
        config = dict(given)
        if content.get("merge"):
            # Field edits from the settings panel: applied in order on the kernel's config, so
            # two quick edits never undo each other. Per-member settings merge per member.
            for name in PER_MEMBER_FIELDS:
                if name in config:
                    config[name] = _merge_per_member(name, self.config.get(name), config[name])
            config = {**self.config, **config}
            for name in PER_MEMBER_FIELDS:
                if name in given:
                    _check_member_keys(name, given[name], config.get("models"))
        self.set_config(config)

    def _msg_estimate(self, content: Mapping[str, Any]) -> None:
        # Sent as the user types: a failure is answered with an empty summary (the page
        # shows nothing), never with an error notice.
        reply: dict[str, Any] = {"type": "estimate", "req": content.get("req")}
        try:
            est = self.estimate(str(content.get("prompt") or ""))
        except Exception as exc:
            logger.debug("estimate failed", exc_info=True)
            reply.update(summary="", error=_friendly(exc))
        else:
            reply.update(
                summary=est.summary,
                calls=est.calls,
                min_calls=est.min_calls,
                max_cost=est.max_cost,
                currency=est.currency,
                unpriced_models=list(est.unpriced_models),
            )
        self._post(reply)

    def _msg_save_config(self, content: Mapping[str, Any]) -> None:
        name = str(content.get("name") or "")
        config = content.get("config")
        if config is not None:
            self.set_config(dict(config))
        saved_configs_store.save(name, ConsortiumConfig.model_validate(self.config))
        self.refresh_saved_configs()
        self._notice("info", f"Saved {name}", content.get("req"))

    def _msg_load_config(self, content: Mapping[str, Any]) -> None:
        name = str(content.get("name") or "")
        self.set_config(saved_configs_store.get(name))
        self._notice("info", f"Loaded {name}", content.get("req"))

    def _msg_clone_config(self, content: Mapping[str, Any]) -> None:
        source, target = str(content.get("source") or ""), str(content.get("target") or "")
        saved_configs_store.clone(source, target)
        self.refresh_saved_configs()
        self._notice("info", f"Cloned {source} as {target}", content.get("req"))

    def _msg_remove_config(self, content: Mapping[str, Any]) -> None:
        name = str(content.get("name") or "")
        saved_configs_store.remove(name)
        self.refresh_saved_configs()
        self._notice("info", f"Removed {name}", content.get("req"))

    def _msg_open_run(self, content: Mapping[str, Any]) -> None:
        run_id = str(content.get("id") or "")
        store = self.store
        row = store.get_run_row(run_id) if store is not None else None
        if row is None:
            raise KeyError(f"no run with id {run_id!r} in the run log")
        if self.status != "idle":
            raise RuntimeError("a run is in progress: stop it first")
        self.open_conversation(row["conversation_id"])

    def _msg_export(self, content: Mapping[str, Any]) -> None:
        run_id = str(content.get("id") or "")
        fmt = str(content.get("format") or "json")
        text = self.export_run(run_id, fmt)
        ext, mime = ("json", "application/json") if fmt == "json" else ("md", "text/markdown")
        self._post(
            {
                "type": "download",
                "filename": f"consortium-run-{run_id}.{ext}",
                "mime": mime,
                "content": text,
                "req": content.get("req"),
            }
        )

    def _notice(self, level: str, message: str, req: Any = None) -> None:
        self._post({"type": "notice", "level": level, "message": message, "req": req})


def _log_failure(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, (RuntimeError, ValueError)):
        logger.debug("chat widget task failed: %r", exc)


# -- a chart for dashboards ----------------------------------------------------------------------


class VegaChart(anywidget.AnyWidget):
    """An Altair chart (or a Vega-Lite dict) rendered by the bundled vega-embed: works offline,
    unlike renderers that load Vega from a CDN. ``VegaChart(chart)`` and display it."""

    _esm = _asset("chart.js")
    _css = _asset("chart.css")

    spec = t.Dict().tag(sync=True)

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        spec = chart.to_dict() if hasattr(chart, "to_dict") else dict(chart)
        super().__init__(spec=spec, **kwargs)
