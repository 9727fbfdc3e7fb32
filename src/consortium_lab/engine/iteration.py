"""One run's loop: fan-out to the members, the arbiter's synthesis, and the next iteration,
yielded as one stream of events (:class:`RunLoop`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.engine.events import (
    ArbiterDelta,
    Event,
    IterationFinished,
    IterationStarted,
    MemberDelta,
    MemberDone,
    MemberFailed,
    MemberQueued,
    RunFailed,
    RunFinished,
    RunStarted,
    Stage,
    SynthesisReady,
)
from consortium_lab.engine.fan_in import FanIn
from consortium_lab.engine.ranking import aggregate_ranking, rank_decision
from consortium_lab.engine.records import CallStats
from consortium_lab.engine.repair import UNREADABLE_IN_A_ROW, kept_cut_off, repair_synthesis
from consortium_lab.engine.vote import Extractor, vote_decision
from consortium_lab.gateway.calls import CacheMode, CallRequest
from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.failures import CallFailed
from consortium_lab.prompts import templates as prompts
from consortium_lab.prompts.parsing import (
    ArbiterParse,
    parse_arbiter_response,
    parse_member_response,
    parse_ranking,
)

if TYPE_CHECKING:
    from consortium_lab.engine.conversation import Conversation

__all__ = ["MemberKey", "RunContext", "RunLoop", "aggregate_ranking", "cancel_all"]

MemberKey = tuple[str, int]


@dataclass
class RunContext:
    """What every call of one run shares: its id, its in-flight tasks (to cancel them), and
    the cache mode, user and sample name its requests carry."""

    run_id: str
    cache: CacheMode = "use"
    user: str | None = None
    sample: str | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    cancelled: bool = False

    def request(self, **fields: Any) -> CallRequest:
        return CallRequest(cache=self.cache, user=self.user, sample=self.sample, **fields)


@dataclass
class _Call:
    """A call in flight: which member, which stage, and the request."""

    key: MemberKey
    stage: Stage
    request: CallRequest


class RunLoop:
    """The orchestration of one run with ``config``, every model call through ``gateway``."""

    def __init__(
        self, config: ConsortiumConfig, gateway: Gateway, extractor: Extractor | None = None
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.extractor = extractor

    async def events(
        self,
        prompt: str,
        conversation: Conversation | None,
        ctx: RunContext,
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
            branch_of=conversation.parent_id if conversation else None,
        )
        previous: list[tuple[int, str]] = []
        last: ArbiterParse | None = None
        final_answers: dict[MemberKey, str] = {}
        unreadable: list[int] = []  # iterations whose synthesis could not be read
        voted: SynthesisReady | None = None
        warnings: list[str] = []
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
            if not cfg.has_arbiter:  # compare, or vote: one iteration, no arbiter
                if cfg.mode == "vote":
                    voted = vote_decision(ctx.run_id, iteration, answers.values(), self.extractor)
                    warnings += voted.warnings
                    yield voted
                conf = voted.confidence if voted else None
                yield IterationFinished(run_id=ctx.run_id, iteration=iteration, confidence=conf)
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
            unreadable = [*unreadable, iteration] if not judge.parse_ok else []
            if will_continue and len(unreadable) >= UNREADABLE_IN_A_ROW:
                will_continue = False
                warnings.append(
                    f"stopped iterating: the arbiter's output could not be read in "
                    f"{len(unreadable)} iterations in a row ({', '.join(map(str, unreadable))})"
                )
            yield IterationFinished(
                run_id=ctx.run_id,
                iteration=iteration,
                confidence=judge.confidence,
                will_continue=will_continue,
            )
            if not will_continue:
                break
        if conversation is not None:
            conversation.record_turn(prompts.wrap_user_prompt(prompt), final_answers)
        if last is not None and not last.parse_ok:
            # The answer shown is the arbiter's raw text: say so, in the status too.
            warnings.insert(
                0,
                f"the arbiter's output of iteration {iteration} could not be read "
                f"({'; '.join(last.warnings) or 'unknown format'}); its raw text is shown",
            )
        yield RunFinished(
            run_id=ctx.run_id,
            iterations=iteration,
            confidence=voted.confidence if voted else last.confidence if last else None,
            status="completed_with_warnings" if warnings else "completed",
            warnings=warnings,
        )

    async def _judge(
        self,
        ctx: RunContext,
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
                prompt,
                candidates,
                previous,
                cfg.system_prompt,
                peer_ranking=peer_ranking,
                threshold=cfg.confidence_threshold,
            )
        )
        request = ctx.request(
            model=cfg.arbiter_model,
            prompt=text,
            options=dict(cfg.arbiter_options),
            limits=cfg.limits,
            stage=stage,
        )
        fan_in: FanIn[Event] = FanIn()

        def delta(text: str, restart: bool = False) -> Event:
            return ArbiterDelta(
                run_id=ctx.run_id,
                model=request.model,
                iteration=iteration,
                text=text,
                stage=stage,
                restart=restart,
            )

        def on_delta(chunk: str, channel: str) -> None:
            if channel == "restart":
                fan_in.put(delta(chunk, restart=True))
            elif channel != "reasoning":
                fan_in.text(channel, chunk, delta)

        task = asyncio.create_task(self.gateway.call(request, on_delta))
        task.add_done_callback(lambda _: fan_in.put(None))
        ctx.tasks.add(task)
        try:
            async for event in fan_in.events(calls=1):
                yield event
            if task.cancelled():  # the run was cancelled: the consumer ends it
                return
            outcome = task.result()
        except CallFailed as exc:
            kept = kept_cut_off(exc, request.model)
            if kept is None:
                yield RunFailed(
                    run_id=ctx.run_id,
                    reason=f"the arbiter {request.model} failed in iteration {iteration}: "
                    f"{exc.message}",
                    errors={f"{request.model} (arbiter)": exc.message},
                )
                return
            outcome = kept  # cut by our limits: read what it wrote so far
        finally:
            ctx.tasks.discard(task)
            await cancel_all([task])
        raw, repairs, stats = outcome.text, 0, CallStats.fields_of(outcome)
        if rank:
            parsed = rank_decision(outcome.text, candidates)
        else:
            parsed = parse_arbiter_response(outcome.text)
            if not parsed.parse_ok and cfg.arbiter_repair and not ctx.cancelled:
                repair = asyncio.create_task(
                    repair_synthesis(self.gateway, request, outcome, parsed)
                )
                ctx.tasks.add(repair)
                try:
                    fixed = await repair
                except asyncio.CancelledError:
                    return
                finally:
                    ctx.tasks.discard(repair)
                parsed, raw, repairs = fixed.parsed, fixed.raw, 1
                stats.update(usage=fixed.usage, cost=fixed.cost)
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
            raw=raw,
            repairs=repairs,
            **stats,
        )
        yield parsed

    async def _fan_out(
        self, ctx: RunContext, iteration: int, calls: list[_Call]
    ) -> AsyncIterator[Event]:
        """Run calls concurrently; yield their deltas as they stream and a done/failed event
        for each as it finishes."""
        fan_in: FanIn[Event] = FanIn()
        stream_deltas = self.config.stream_individual_responses

        async def one(call: _Call) -> None:
            model, instance = call.key
            who: dict[str, Any] = {
                "run_id": ctx.run_id,
                "model": model,
                "instance": instance,
                "iteration": iteration,
                "stage": call.stage,
            }
            deltas = {kind: partial(MemberDelta, **who, channel=kind) for kind in CHANNELS}

            def on_delta(chunk: str, channel: str) -> None:
                if channel in ("queued", "started"):
                    fan_in.put(MemberQueued(**who, queued=channel == "queued"))
                elif stream_deltas and channel == "restart":
                    fan_in.put(MemberDelta(**who, text=chunk, restart=True))
                elif stream_deltas:
                    kind = "reasoning" if channel == "reasoning" else "text"
                    fan_in.text((call.key, call.stage, kind), chunk, deltas[kind])

            def done(text: str, reasoning: str, stats: dict[str, Any], **cut: Any) -> MemberDone:
                parsed = parse_member_response(text)
                answer = call.stage == "answer"
                return MemberDone(
                    **who,
                    **stats,
                    **cut,
                    text=text,
                    answer=parsed.answer if answer else text,
                    thought_process=parsed.thought_process if answer else "",
                    reasoning=reasoning,
                    confidence=parsed.confidence if answer else None,
                    parse_warnings=parsed.warnings if answer else [],
                )

            try:
                outcome = await self.gateway.call(call.request, on_delta)
                cut: dict[str, Any] = {}
                if outcome.truncated:
                    cut = {
                        "truncated": True,
                        "error_type": "length",
                        "error": f"{model}: stopped at its max-tokens limit "
                        f"({call.request.limits.max_output_tokens})",
                    }
                fan_in.put(
                    done(outcome.text, outcome.reasoning, CallStats.fields_of(outcome), **cut)
                )
            except CallFailed as exc:
                if exc.kind == "cut_off" and exc.partial_text.strip():
                    # Cut by our limits (tokens or time): the text so far is the answer.
                    stats = {
                        "latency_ms": exc.latency_ms,
                        "served_by": exc.served_by,
                        "attempts": exc.attempts,
                    }
                    fan_in.put(
                        done(
                            exc.partial_text,
                            "",
                            stats,
                            truncated=True,
                            error_type="cut_off",
                            error=exc.message,
                        )
                    )
                    return

                fan_in.put(
                    MemberFailed(
                        **who,
                        error=exc.message,
                        error_type=exc.kind,
                        text=exc.partial_text,
                        latency_ms=exc.latency_ms,
                        served_by=exc.served_by,
                        attempts=exc.attempts,
                    )
                )
            finally:
                fan_in.put(None)

        tasks = [asyncio.create_task(one(call)) for call in calls]
        ctx.tasks.update(tasks)
        try:
            async for event in fan_in.events(calls=len(tasks)):
                yield event
        finally:
            ctx.tasks.difference_update(tasks)
            await cancel_all(tasks)


CHANNELS = ("text", "reasoning")
"""The channels of a member's streamed text."""


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they have finished (so their connections are closed)."""
    tasks = [t for t in tasks if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
