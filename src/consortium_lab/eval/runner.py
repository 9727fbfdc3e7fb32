"""Running an evaluation: every item through every condition (and sample), scored, recorded.

:func:`evaluate` is the one entry point (the CLI and the notebook call it). Calls run
``concurrency`` at a time; each scored answer is committed to the run log at once
(:class:`~consortium_lab.eval.store.EvalStore`), so ``resume=<evaluation id>`` asks only
what is not scored yet. ``progress`` is called after every answer with a :class:`Progress`.

Samples: with ``samples=K`` each item is asked K times per condition; every run carries the
sample name ``<condition>#<index>``, which the gateway puts in the cache key and the seed, so
no two samples (and no two conditions) share a cached answer. Sampled evaluations bypass the
cache unless ``cache`` says otherwise, and the report's notes say so; a condition with
instances of ``model:n`` (a vote over ``model:7``) counts as sampled too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consortium_lab.engine.consortium import Consortium
from consortium_lab.eval.conditions import (
    Condition,
    answer_of,
    build_conditions,
    check_condition,
    run_usage,
)
from consortium_lab.eval.dataset import Dataset, Item, load_dataset
from consortium_lab.eval.report import EvalReport, ItemResult
from consortium_lab.eval.scorers import Score, Scorer, get_scorer
from consortium_lab.eval.stats import DEFAULT_SEED
from consortium_lab.eval.store import EvalStore
from consortium_lab.gateway.core import Gateway

__all__ = ["Progress", "evaluate", "evaluate_sync"]

BYPASS_NOTE = (
    "sampled, so the cache was bypassed (each sample was asked anew); pass cache='use'"
    " to replay each sample's own cached answer"
)
SAMPLED_USE_NOTE = (
    "cache 'use' with samples: each sample of each condition has its own cache entry, so a"
    " sample is never replayed into another sample or condition"
)


@dataclass
class Progress:
    """Answers done and to do, per condition, and when the evaluation started."""

    totals: dict[str, int]
    done: dict[str, int]
    already: int = 0
    """Answers scored before this process started (a resume): left out of the ETA."""
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return sum(self.done.values())

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before the first answer of this process)."""
        new = self.finished - self.already
        if new <= 0:
            return None
        return (time.monotonic() - self.started) / new * (self.total - self.finished)

    def line(self) -> str:
        """``member:a 3/10 | consortium 2/10 | ETA 12s``."""
        parts = [f"{name} {self.done[name]}/{self.totals[name]}" for name in self.totals]
        eta = self.eta()
        parts.append("ETA --" if eta is None else f"ETA {eta:.0f}s")
        return " | ".join(parts)


def _check_references(scorer: Scorer, items: Sequence[Item]) -> None:
    """Refuse to start when a reference cannot be scored (a numeric item without a number,
    a choice item whose answer is no letter or choice)."""
    check = getattr(scorer, "check", None)
    if check is None:
        return
    problems = []
    for item in items:
        try:
            check(scorer.extract(item.answer) or "", item)
        except ValueError as exc:
            problems.append(f"line {item.line}: {exc}")
    if problems:
        raise ValueError(
            f"the {scorer.name} scorer cannot read these references:\n  " + "\n  ".join(problems)
        )


def _same_items(stored: Sequence[Item], given: Sequence[Item], eval_id: str) -> None:
    def key(items: Sequence[Item]) -> list[tuple[str, str, str]]:
        return [(i.id, i.prompt, i.answer) for i in items]

    if key(stored) != key(given):
        raise ValueError(
            f"evaluation {eval_id} was started on other items ({len(stored)} stored, "
            f"{len(given)} given, or their ids, prompts or answers differ): resume it with the"
            " same dataset and --limit"
        )


def _cache_modes(
    conditions: Sequence[Condition], samples: int, cache: str | None
) -> tuple[dict[str, str], list[str]]:
    """Each condition's cache mode, and which conditions are sampled (repeated samples, or
    instances of ``model:n`` such as a vote over ``model:7``): those bypass the cache unless
    ``cache`` is given. A condition whose config is invalid raises ``ValueError`` naming it."""
    caches: dict[str, str] = {}
    sampled: list[str] = []
    for condition in conditions:
        try:
            config = check_condition(condition)
        except ValueError as exc:
            raise ValueError(f"condition {condition.name}: {exc}") from exc
        if samples > 1 or any(n > 1 for n in config.models.values()):
            sampled.append(condition.name)
            caches[condition.name] = cache or "bypass"
        else:
            caches[condition.name] = cache or "use"
    return caches, sampled


def _notes(caches: dict[str, str], sampled: Sequence[str], data: Dataset) -> list[str]:
    """What the report must tell the reader: how sampled conditions met the cache, and the
    bad rows skipped."""
    notes = []
    bypassed = [name for name in sampled if caches[name] == "bypass"]
    if bypassed:
        notes.append(f"{', '.join(bypassed)}: {BYPASS_NOTE}")
    if len(bypassed) < len(sampled):
        notes.append(SAMPLED_USE_NOTE)
    if data.skipped:
        notes.append(
            f"{len(data.skipped)} bad row(s) skipped: " + "; ".join(map(str, data.skipped))
        )
    return notes


async def evaluate(
    dataset: Any,
    *,
    models: Sequence[str] = (),
    arbiter: str | None = None,
    modes: Sequence[str] = ("members", "consortium"),
    conditions: Sequence[Condition] | None = None,
    scorer: Any = "exact",
    scorer_options: dict[str, Any] | None = None,
    samples: int = 1,
    concurrency: int = 4,
    limit: int | None = None,
    skip_bad: bool = False,
    cache: str | None = None,
    seed: int | None = DEFAULT_SEED,
    store: EvalStore | str | Path | None = None,
    resume: str | None = None,
    gateway: Any = None,
    progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> EvalReport:
    """Evaluate ``dataset`` (path, DataFrame, list of dicts or :class:`Dataset`) on
    ``conditions`` (default: built from ``modes``, ``models`` and ``arbiter``) and return the
    :class:`EvalReport`.

    ``scorer``: a name (``scorer_options``: ``tolerance``, ``pattern``, ``model``), a callable
    or a scorer. ``cache``: ``"use"``, ``"bypass"`` or ``"refresh"`` for every condition;
    by default ``"bypass"`` for sampled conditions (``samples > 1``, or instances of
    ``model:n``), else ``"use"``. ``seed`` fixes the bootstrap intervals. ``store``:
    the run log (default: the per-user file). ``resume``: an evaluation id to continue; the
    same items and conditions are required. ``on_start`` receives the evaluation id once it
    is recorded.
    """
    if samples < 1:
        raise ValueError(f"samples: expected at least 1 (got {samples})")
    if concurrency < 1:
        raise ValueError(f"concurrency: expected at least 1 (got {concurrency})")
    if cache is not None and cache not in ("use", "bypass", "refresh"):
        raise ValueError(f"cache: expected 'use', 'bypass' or 'refresh' (got {cache!r})")
    data: Dataset = load_dataset(dataset, skip_bad=skip_bad).limit(limit)
    options = dict(scorer_options or {})
    gateway = gateway or Gateway()
    if scorer == "judge":
        options.setdefault("gateway", gateway)
    the_scorer = get_scorer(scorer, **options)
    _check_references(the_scorer, data.items)
    if conditions is None:
        conditions = build_conditions(modes, models, arbiter)
    caches, sampled_names = _cache_modes(conditions, samples, cache)
    owned = not isinstance(store, EvalStore)
    log = store if isinstance(store, EvalStore) else EvalStore(store)
    try:
        notes = _notes(caches, sampled_names, data)
        names = [c.name for c in conditions]
        # Built (models checked) before anything is recorded: a typo never leaves a row.
        # A vote counts answers as the scorer reads them ("110" and "It is 110" agree).
        consortia = {
            c.name: Consortium(c.settings, gateway=gateway, store=log, extractor=the_scorer.extract)
            for c in conditions
        }
        if resume is not None:
            row = log.evaluation(resume)
            eval_id = row["id"]
            _same_items(log.items(eval_id), data.items, eval_id)
            if (
                row["conditions"] != names
                or row["samples"] != samples
                or row["scorer"] != the_scorer.name
            ):
                raise ValueError(
                    f"evaluation {eval_id} asked {', '.join(row['conditions'])} with the "
                    f"{row['scorer']} scorer and {row['samples']} sample(s): resume it with the"
                    " same --modes, models, --scorer and --samples"
                )
            log.claim(eval_id)
        else:
            eval_id = log.create(
                dataset=data.source,
                items=data.items,
                scorer=the_scorer.name,
                samples=samples,
                conditions=names,
                settings={
                    "conditions": {c.name: c.settings for c in conditions},
                    "cache": caches,
                    "concurrency": concurrency,
                    "seed": seed,
                },
                skipped=len(data.skipped),
                notes=notes,
            )
        if on_start is not None:
            on_start(eval_id)
        done = log.done(eval_id)
        state = Progress(
            totals={n: len(data.items) * samples for n in names},
            done={n: sum(1 for d in done if d[1] == n) for n in names},
        )
        state.already = state.finished
        limiter = asyncio.Semaphore(concurrency)

        async def one(item: Item, condition: Condition, sample: int) -> None:
            async with limiter:
                result = await _answer(
                    consortia[condition.name],
                    the_scorer,
                    item,
                    condition.name,
                    sample,
                    caches[condition.name],
                )
                log.add_result(eval_id, result)
            state.done[condition.name] += 1
            if progress is not None:
                progress(state)

        jobs = [
            one(item, condition, sample)
            for item in data.items
            for sample in range(samples)
            for condition in conditions
            if (item.id, condition.name, sample) not in done
        ]
        if progress is not None:
            progress(state)
        try:
            await asyncio.gather(*jobs)
        except Exception:
            log.finish(eval_id, "failed")
            raise
        except BaseException:  # cancelled, Ctrl-C: what was scored stays; resume continues
            log.finish(eval_id, "interrupted")
            raise
        log.finish(eval_id, "completed")
        return log.report(eval_id, seed=seed)
    finally:
        if owned:
            log.close()


async def _answer(
    consortium: Any, scorer: Scorer, item: Item, condition: str, sample: int, cache: str
) -> ItemResult:
    """Ask ``item`` once and score what the user would read."""
    started = time.monotonic()
    try:
        result = await consortium.run(item.prompt, cache=cache, sample=f"{condition}#{sample}")
    except Exception as exc:  # a run that could not even start: recorded, counted wrong
        return ItemResult(
            item_id=item.id,
            condition=condition,
            sample=sample,
            correct=False,
            latency_s=time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
        )
    latency = time.monotonic() - started
    tokens, cost = run_usage(result)
    error = (result.error or "the run failed") if result.status == "failed" else None
    text = answer_of(result) if error is None else ""
    score = await scorer.score(text, item) if error is None else Score(False)
    return ItemResult(
        item_id=item.id,
        condition=condition,
        sample=sample,
        answer=text,
        extracted=score.extracted,
        correct=score.correct,
        run_id=result.run_id,
        latency_s=latency,
        tokens=tokens,
        cost=cost,
        error=error,
        verdict=score.verdict,
    )


def evaluate_sync(dataset: Any, **kwargs: Any) -> EvalReport:
    """Blocking :func:`evaluate` for scripts (in Jupyter use ``await evaluate(...)``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(evaluate(dataset, **kwargs))
    raise RuntimeError("evaluate_sync() cannot run inside a running event loop: await evaluate()")
