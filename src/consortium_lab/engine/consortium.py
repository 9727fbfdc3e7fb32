"""The async orchestrator: fan-out to members, arbiter synthesis, iteration — as one event stream.

:class:`Consortium` is the entry point. ``consortium.stream(prompt)`` returns a :class:`Run`, an
async iterator of :mod:`~consortium_lab.engine.events`; ``await consortium.run(prompt)`` folds it
into a
:class:`~consortium_lab.engine.result.RunResult`. Sinks (the run log, the CLI printer, the widget)
receive the same events; the engine itself never touches SQLite, widgets or HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consortium_lab.config.consortium import (
    STORED,
    ConsortiumConfig,
    check_setting_names,
    parse_models,
)
from consortium_lab.config.consortium import check_models as _check_models
from consortium_lab.engine.events import (
    ArbiterDelta,
    Event,
    IterationFinished,
    IterationStarted,
    MemberDelta,
    MemberDone,
    MemberFailed,
    RunFailed,
    RunFinished,
    RunStarted,
    Stage,
    SynthesisReady,
)
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.core import CacheMode, CallFailed, CallRequest, Gateway
from consortium_lab.prompts import templates as prompts
from consortium_lab.prompts.parsing import (
    ArbiterParse,
    parse_arbiter_response,
    parse_member_response,
    parse_ranking,
)

if TYPE_CHECKING:
    from consortium_lab.gateway.pricing import Estimate

Sink = Callable[[Event], None]
MemberKey = tuple[str, int]


@dataclass
class _RunContext:
    """What every call of one run shares: its id, its in-flight tasks (to cancel them), and
    the cache mode and user its requests carry."""

    run_id: str
    cache: CacheMode = "use"
    user: str | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    cancelled: bool = False

    def request(self, **fields: Any) -> CallRequest:
        return CallRequest(cache=self.cache, user=self.user, **fields)


@dataclass
class _Call:
    """A call in flight: which member, which stage, and the request."""

    key: MemberKey
    stage: Stage
    request: CallRequest


class Consortium:
    """Several models answering one prompt, an arbiter synthesizing, iterating to a threshold.

    Build it from a :class:`ConsortiumConfig` or from keyword arguments::

        Consortium(models=["gpt-4o-mini:2", "claude-3.5-haiku"], arbiter="gpt-4o",
                   confidence_threshold=0.8, max_iterations=3)

    Args:
        config: a config (or a dict of one); keyword settings override its fields.
        gateway: the :class:`Gateway` every model call goes through (a default one if
        None).
        store: the run log: a :class:`~consortium_lab.sinks.runlog.RunStore`, a path, ``None`` for
        the
            default per-user file, or ``False`` to keep no log.
        check_models: verify that every model exists and is usable before running.
        sinks: extra callables that receive every event.
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
        self.gateway = gateway or Gateway()
        if check_models:
            _check_models(self.config, also_known=self.gateway.group_names)
        self._store_arg = store
        self._store: Any = None
        self.sinks = list(sinks)

    # -- public API -----------------------------------------------------------------------
    @property
    def store(self) -> Any:
        """The run log this consortium writes to (None when logging is off)."""
        if self._store is None and self._store_arg is not False:
            from consortium_lab.sinks.runlog import RunStore

            arg = self._store_arg
            self._store = (
                arg
                if isinstance(arg, RunStore)
                else RunStore(Path(arg) if arg is not None else None)
            )
        return self._store

    def stream(
        self,
        prompt: str,
        *,
        conversation: Conversation | None = None,
        cache: CacheMode = "use",
        user: str | None = None,
    ) -> Run:
        """Start a run; iterate the returned :class:`Run` for its events.

        ``cache``: ``"use"`` cached answers (the default), ``"bypass"`` the cache, or
        ``"refresh"`` it (ask again and store the new answers). ``user``: the identity the
        gateway applies quotas and cache separation to (default: the gateway's own).
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt: expected a non-empty string (got {prompt!r})")
        if cache not in ("use", "bypass", "refresh"):
            raise ValueError(f"cache: expected 'use', 'bypass' or 'refresh' (got {cache!r})")
        return Run(self, prompt, conversation, cache=cache, user=user)

    async def run(
        self,
        prompt: str,
        *,
        conversation: Conversation | None = None,
        cache: CacheMode = "use",
        user: str | None = None,
    ) -> RunResult:
        """Run to the end and return the result (same arguments as :meth:`stream`)."""
        run = self.stream(prompt, conversation=conversation, cache=cache, user=user)
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

    # -- orchestration --------------------------------------------------------------------
    async def _events(
        self,
        prompt: str,
        conversation: Conversation | None,
        ctx: _RunContext,
    ) -> AsyncGenerator[Event, None]:
        cfg = self.config
        histories: dict[MemberKey, list[tuple[str, str]]] = {
            key: list(conversation.histories.get(key, [])) if conversation else []
            for key in cfg.members()
        }
        turn = 1
        if conversation is not None:
            # Every run is a turn, finished or not, as in the run log it is rebuilt from.
            conversation.turn_count += 1
            turn = conversation.turn_count
        yield RunStarted(
            run_id=ctx.run_id,
            prompt=prompt,
            config=cfg.to_dict(),
            conversation_id=conversation.id if conversation else None,
            turn=turn,
        )
        previous: list[tuple[int, str]] = []
        last: ArbiterParse | None = None
        final_answers: dict[MemberKey, str] = {}
        iteration = 0
        for iteration in range(1, cfg.max_iterations + 1):
            yield IterationStarted(run_id=ctx.run_id, iteration=iteration)
            member_prompt = (
                prompts.wrap_user_prompt(prompt)
                if last is None
                else prompts.iteration_prompt(
                    prompt, last.synthesis, last.refinement_areas, cfg.system_prompt
                )
            )
            calls = [
                _Call(
                    key=(model, instance),
                    stage="answer",
                    request=ctx.request(
                        model=model,
                        instance=instance,
                        prompt=member_prompt,
                        system=prompts.member_system_prompt(
                            cfg.system_prompt, cfg.system_prompt_for(model, instance)
                        ),
                        history=tuple(histories[(model, instance)]),
                        options=cfg.options_for(model, instance),
                        limits=cfg.limits,
                    ),
                )
                for model, instance in cfg.members()
            ]
            answers: dict[MemberKey, MemberDone] = {}
            errors: dict[str, str] = {}
            async for event in self._fan_out(ctx, iteration, calls):
                if isinstance(event, MemberDone):
                    answers[(event.model, event.instance)] = event
                    histories[(event.model, event.instance)].append((member_prompt, event.text))
                elif isinstance(event, MemberFailed):
                    errors[f"{event.model}#{event.instance}"] = event.error
                yield event
            if ctx.cancelled:
                return
            if not answers:
                yield RunFailed(
                    run_id=ctx.run_id,
                    reason=f"every member failed in iteration {iteration}: "
                    + "; ".join(f"{k}: {v}" for k, v in errors.items()),
                    errors=errors,
                )
                return
            # Config order, not finishing order: response ids must not depend on who was fastest.
            answers = {key: answers[key] for key in cfg.members() if key in answers}
            for key, done in answers.items():
                final_answers[key] = done.text
            candidates = [
                prompts.Candidate(id=i, model=d.model, answer=d.answer, confidence=d.confidence)
                for i, d in enumerate(answers.values(), start=1)
            ]
            if cfg.mode == "compare":
                yield IterationFinished(run_id=ctx.run_id, iteration=iteration)
                break
            peer_ranking: list[int] = []
            if cfg.mode == "council":
                reviews: list[list[int]] = []
                review_prompt = prompts.rank_prompt(prompt, candidates, anonymize=True)
                review_calls = [
                    _Call(
                        key=key,
                        stage="peer_review",
                        request=ctx.request(
                            model=key[0],
                            instance=key[1],
                            prompt=review_prompt,
                            options=cfg.options_for(*key),
                            limits=cfg.limits,
                            stage="peer_review",
                        ),
                    )
                    for key in answers
                ]
                async for event in self._fan_out(ctx, iteration, review_calls):
                    if isinstance(event, MemberDone):
                        reviews.append(parse_ranking(event.text))
                    yield event
                if ctx.cancelled:
                    return
                peer_ranking = aggregate_ranking(reviews, [c.id for c in candidates])
            judge: ArbiterParse | None = None
            async for item in self._judge(
                ctx, iteration, prompt, candidates, previous, peer_ranking
            ):
                if isinstance(item, ArbiterParse):
                    judge = item
                else:
                    yield item
                    if isinstance(item, RunFailed):
                        return
            if judge is None:  # cancelled during the arbiter's turn
                return
            last = judge
            previous.append((iteration, judge.synthesis))
            converged = (
                not judge.needs_iteration
                and judge.confidence is not None
                and judge.confidence >= cfg.confidence_threshold
                and iteration >= cfg.minimum_iterations
            )
            will_continue = not converged and iteration < cfg.max_iterations
            yield IterationFinished(
                run_id=ctx.run_id,
                iteration=iteration,
                confidence=judge.confidence,
                will_continue=will_continue,
            )
            if not will_continue:
                break
        if conversation is not None:
            conversation._record_turn(prompts.wrap_user_prompt(prompt), final_answers)
        yield RunFinished(
            run_id=ctx.run_id, iterations=iteration, confidence=last.confidence if last else None
        )

    async def _judge(
        self,
        ctx: _RunContext,
        iteration: int,
        prompt: str,
        candidates: list[prompts.Candidate],
        previous: list[tuple[int, str]],
        peer_ranking: list[int],
    ) -> AsyncIterator[Event | ArbiterParse]:
        """The arbiter's (or chairman's) turn; yields its events, then its parsed decision."""
        cfg = self.config
        rank = cfg.judging_method == "rank" and cfg.mode == "consortium"
        stage: Stage = "chair" if cfg.mode == "council" else "arbiter"
        text = (
            prompts.rank_prompt(prompt, candidates)
            if rank
            else prompts.arbiter_prompt(
                prompt, candidates, previous, cfg.system_prompt, peer_ranking=peer_ranking
            )
        )
        request = ctx.request(
            model=cfg.arbiter_model,
            prompt=text,
            options=dict(cfg.arbiter_options),
            limits=cfg.limits,
            stage=stage,
        )
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def on_delta(chunk: str, channel: str) -> None:
            if channel != "reasoning":
                queue.put_nowait(
                    ArbiterDelta(
                        run_id=ctx.run_id,
                        model=request.model,
                        iteration=iteration,
                        text=chunk,
                        stage=stage,
                        restart=channel == "restart",
                    )
                )

        task = asyncio.create_task(self.gateway.call(request, on_delta))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        ctx.tasks.add(task)
        try:
            while (event := await queue.get()) is not None:
                yield event
            if task.cancelled():  # the run was cancelled: the consumer ends it
                return
            outcome = task.result()
        except CallFailed as exc:
            yield RunFailed(
                run_id=ctx.run_id,
                reason=f"the arbiter {request.model} failed in iteration {iteration}: "
                f"{exc.message}",
                errors={f"{request.model} (arbiter)": exc.message},
            )
            return
        finally:
            ctx.tasks.discard(task)
            await _cancel_all([task])
        if rank:
            parsed = _rank_decision(outcome.text, candidates)
        else:
            parsed = parse_arbiter_response(outcome.text)
        yield SynthesisReady(
            run_id=ctx.run_id,
            iteration=iteration,
            model=request.model,
            synthesis=parsed.synthesis,
            confidence=parsed.confidence,
            analysis=parsed.analysis,
            dissent=parsed.dissent,
            needs_iteration=parsed.needs_iteration,
            refinement_areas=parsed.refinement_areas,
            ranking=parsed.ranking or peer_ranking,
            parse_ok=parsed.parse_ok,
            warnings=parsed.warnings,
            raw=outcome.text,
            latency_ms=outcome.latency_ms,
            usage=outcome.usage,
            served_by=outcome.served_by,
            cached=outcome.cached,
            attempts=outcome.attempts,
            cost=outcome.cost,
        )
        yield parsed

    async def _fan_out(
        self, ctx: _RunContext, iteration: int, calls: list[_Call]
    ) -> AsyncIterator[Event]:
        """Run calls concurrently; yield their deltas as they stream and a done/failed event
        for each as it finishes."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        stream_deltas = self.config.stream_individual_responses

        async def one(call: _Call) -> None:
            model, instance = call.key

            def on_delta(chunk: str, channel: str) -> None:
                if stream_deltas:
                    queue.put_nowait(
                        MemberDelta(
                            run_id=ctx.run_id,
                            model=model,
                            instance=instance,
                            iteration=iteration,
                            stage=call.stage,
                            text=chunk,
                            channel="reasoning" if channel == "reasoning" else "text",
                            restart=channel == "restart",
                        )
                    )

            try:
                outcome = await self.gateway.call(call.request, on_delta)
                parsed = parse_member_response(outcome.text)
                queue.put_nowait(
                    MemberDone(
                        run_id=ctx.run_id,
                        model=model,
                        instance=instance,
                        iteration=iteration,
                        stage=call.stage,
                        text=outcome.text,
                        answer=parsed.answer if call.stage == "answer" else outcome.text,
                        thought_process=parsed.thought_process if call.stage == "answer" else "",
                        reasoning=outcome.reasoning,
                        confidence=parsed.confidence if call.stage == "answer" else None,
                        latency_ms=outcome.latency_ms,
                        first_token_ms=outcome.first_token_ms,
                        usage=outcome.usage,
                        served_by=outcome.served_by,
                        cached=outcome.cached,
                        attempts=outcome.attempts,
                        response_id=outcome.response_id,
                        cost=outcome.cost,
                        parse_warnings=parsed.warnings if call.stage == "answer" else [],
                    )
                )
            except CallFailed as exc:
                queue.put_nowait(
                    MemberFailed(
                        run_id=ctx.run_id,
                        model=model,
                        instance=instance,
                        iteration=iteration,
                        stage=call.stage,
                        error=exc.message,
                        error_type=exc.kind,
                        partial_text=exc.partial_text,
                        latency_ms=exc.latency_ms,
                        served_by=exc.served_by,
                        attempts=exc.attempts,
                    )
                )
            finally:
                queue.put_nowait(None)

        tasks = [asyncio.create_task(one(call)) for call in calls]
        ctx.tasks.update(tasks)
        try:
            pending = len(tasks)
            while pending:
                event = await queue.get()
                if event is None:
                    pending -= 1
                else:
                    yield event
        finally:
            ctx.tasks.difference_update(tasks)
            await _cancel_all(tasks)


def aggregate_ranking(reviews: Iterable[Sequence[int]], ids: Sequence[int]) -> list[int]:
    """Council aggregate: ids ordered by mean position across reviews (llm-council's rule); an id
    a reviewer left out counts as ranked last by that reviewer. Ties keep the original order."""
    reviews = [r for r in reviews if r]
    if not reviews:
        return []
    worst = len(ids) + 1

    def mean_position(i: int) -> float:
        return sum((r.index(i) + 1) if i in r else worst for r in reviews) / len(reviews)

    return sorted(ids, key=mean_position)


def _rank_decision(text: str, candidates: list[prompts.Candidate]) -> ArbiterParse:
    """Rank judging: the synthesis is the top-ranked answer; the confidence is the arbiter's
    stated one, else the top member's own."""
    ids = {c.id for c in candidates}
    ranking = [i for i in parse_ranking(text) if i in ids]
    parsed = parse_arbiter_response(text)
    if not ranking:
        return parsed.model_copy(
            update={
                "parse_ok": False,
                "warnings": [*parsed.warnings, "no ranking of the given responses found"],
            }
        )
    top = next(c for c in candidates if c.id == ranking[0])
    return ArbiterParse(
        synthesis=top.answer,
        confidence=parsed.confidence if parsed.confidence is not None else top.confidence,
        analysis=f"Ranked best: response {top.id} ({top.model}). Ranking: {ranking}",
        needs_iteration=parsed.needs_iteration,
        refinement_areas=parsed.refinement_areas,
        ranking=ranking,
        parse_ok=True,
        raw=text,
    )


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they have finished (so their connections are closed)."""
    tasks = [t for t in tasks if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


class Run:
    """One run in progress: an async iterator of its events, with :meth:`cancel` and
    :attr:`result`. Every event goes to the run log and the sinks before the consumer sees it.

    Use it as ``async for event in run`` (optionally inside ``async with run:`` so leaving the
    block early closes the model calls).
    """

    def __init__(
        self,
        consortium: Consortium,
        prompt: str,
        conversation: Conversation | None,
        *,
        cache: CacheMode = "use",
        user: str | None = None,
    ) -> None:
        self.consortium = consortium
        self.run_id = uuid.uuid4().hex
        self.prompt = prompt
        self._ctx = _RunContext(run_id=self.run_id, cache=cache, user=user)
        self._tasks = self._ctx.tasks
        self._gen = consortium._events(prompt, conversation, self._ctx)
        self._result: RunResult | None = None
        self._iterating = False
        self._finished = False
        self._store = consortium.store
        self._sinks = consortium.sinks

    @property
    def result(self) -> RunResult:
        """The result so far (complete once the iterator is exhausted)."""
        if self._result is None:
            raise RuntimeError("the run has not started yet: iterate it or await consortium.run()")
        return self._result

    def __aiter__(self) -> Run:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        event: Event | None = None
        if not self._ctx.cancelled:
            self._iterating = True
            try:
                event = await self._gen.__anext__()
            except StopAsyncIteration:
                event = None
            except asyncio.CancelledError:
                # The consumer's own task was cancelled: close the calls, log the cancellation.
                self._iterating = False
                await self._close_calls()
                if self._result is not None and self._result.status == "running":
                    await self._emit(self._cancelled_event())
                self._finished = True
                raise
            finally:
                self._iterating = False
        if self._ctx.cancelled:
            # cancel() was called (maybe from another task while we waited): whatever the
            # generator produced after that is dropped, the run ends as cancelled.
            await self._close_calls()
            self._finished = True
            return await self._emit(self._cancelled_event())
        if event is None:
            self._finished = True
            raise StopAsyncIteration
        if isinstance(event, (RunFinished, RunFailed)):
            self._finished = True
        return await self._emit(event)

    def _cancelled_event(self) -> RunFinished:
        iterations = len(self._result.iterations) if self._result else 0
        return RunFinished(run_id=self.run_id, iterations=iterations, status="cancelled")

    async def _emit(self, event: Event) -> Event:
        """Fold the event into the result, log it, and hand it to the sinks."""
        if isinstance(event, RunStarted):
            self._result = RunResult.from_events([event])
        elif self._result is not None:
            self._result.apply(event)
        if self._store is not None and not isinstance(event, (MemberDelta, ArbiterDelta)):
            # A write may wait for another process's lock: never on the event loop.
            await asyncio.to_thread(self._store.record, event)
        for sink in self._sinks:
            sink(event)
        return event

    async def _close_calls(self) -> None:
        await _cancel_all(list(self._tasks))
        if not self._iterating:
            # Only the iterating task may close the generator; it does so on its next step.
            await self._gen.aclose()

    async def cancel(self) -> None:
        """Stop the run, from any task: close every in-flight model call; the next event is
        ``run_finished`` with status ``cancelled`` (what completed is kept)."""
        if self._finished:
            return
        self._ctx.cancelled = True
        await self._close_calls()

    async def aclose(self) -> None:
        """Close in-flight calls if the run was left before its end."""
        if not self._finished:
            await self.cancel()
            if self._result is not None:
                await self.__anext__()

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Conversation:
    """A multi-turn conversation: each member keeps its own history across follow-ups (one
    member's answer is never fed to another as its history)."""

    def __init__(self, consortium: Consortium, conversation_id: str | None = None) -> None:
        self.consortium = consortium
        self.id = conversation_id or uuid.uuid4().hex
        self.histories: dict[MemberKey, list[tuple[str, str]]] = {}
        self.turn_count = 0

    def stream(self, prompt: str) -> Run:
        """Ask a follow-up; iterate the returned run for its events."""
        return self.consortium.stream(prompt, conversation=self)

    async def ask(self, prompt: str) -> RunResult:
        """Ask a follow-up and return its result."""
        return await self.consortium.run(prompt, conversation=self)

    def _record_turn(self, user_text: str, answers: Mapping[MemberKey, str]) -> None:
        """A completed turn: each member's final answer joins its own history."""
        for key, text in answers.items():
            self.histories.setdefault(key, []).append((user_text, text))

    @classmethod
    def from_log(
        cls, conversation_id: str, consortium: Consortium | None = None, *, store: Any = None
    ) -> Conversation:
        """Rebuild a conversation (each member's own history) from the run log; its last
        run's config is used when no consortium is given."""
        from consortium_lab.sinks.runlog import RunStore

        store = store if isinstance(store, RunStore) else RunStore(store)
        runs = store.list_runs(conversation_id=conversation_id)
        if not runs:
            raise KeyError(f"no conversation {conversation_id!r} in the run log {store.path}")
        if consortium is None:
            import json

            latest = runs[0]
            config = (
                latest["config"]
                if isinstance(latest["config"], dict)
                else json.loads(latest["config"])
            )
            consortium = Consortium(config, store=store)
        conversation = cls(consortium, conversation_id)
        for key, turns in store.conversation_history(conversation_id).items():
            conversation.histories[key] = [
                (prompts.wrap_user_prompt(user), answer) for user, answer in turns
            ]
        conversation.turn_count = len(runs)
        return conversation
