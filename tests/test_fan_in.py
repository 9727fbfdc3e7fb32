"""FanIn: the events of concurrent calls to one consumer, pieces of text that wait together
sent as one delta, never moved past an event of their call."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from consortium_lab import Consortium, Gateway
from consortium_lab.engine.events import iso_utc
from consortium_lab.engine.fan_in import FanIn

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

stamp = datetime.fromisoformat


def piece(key: str):  # type: ignore[no-untyped-def]
    return lambda text: (key, text)


async def test_pieces_that_wait_together_become_one_delta_in_order() -> None:
    fan_in: FanIn[Any] = FanIn()
    fan_in.text("a", "Hel", piece("a"))
    fan_in.text("b", "Wor", piece("b"))
    fan_in.text("a", "lo", piece("a"))
    fan_in.put("a done")  # an event: later pieces of any call start a new delta
    fan_in.text("a", "again", piece("a"))
    fan_in.text("b", "ld", piece("b"))
    fan_in.put(None)
    assert await fan_in.take() == [
        ("a", "Hello"),
        ("b", "Wor"),
        "a done",
        ("a", "again"),
        ("b", "ld"),
        None,
    ]
    fan_in.text("a", "next", piece("a"))  # a new take starts new deltas
    assert await fan_in.take() == [("a", "next")]


async def test_take_waits_for_the_first_item_and_events_end_with_every_call() -> None:
    fan_in: FanIn[Any] = FanIn()
    got: list[Any] = []

    async def consume() -> None:
        async for event in fan_in.events(calls=2):
            got.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    assert not task.done() and got == []
    fan_in.text("a", "x", piece("a"))
    fan_in.put(None)
    await asyncio.sleep(0)
    assert got == [("a", "x")] and not task.done()
    fan_in.put("b done")
    fan_in.put(None)
    await asyncio.wait_for(task, 30)
    assert got == [("a", "x"), "b done"]


async def test_a_consumer_that_falls_behind_gets_the_rest_of_each_answer_as_one_delta(
    fake_openai: Any,
) -> None:
    answers = {f"m{i}": member_reply(f"Answer {i} " + "word " * 60) for i in (1, 2)}
    for model, reply in answers.items():
        fake_openai.add_model(model, ModelScript(reply=reply, token_delay=0.002))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Both.")))
    gateway = Gateway(cache=None, log_to_llm=False)
    finished: list[str] = []
    call = gateway.call

    async def recorded(req: Any, on_delta: Any = None) -> Any:
        outcome = await call(req, on_delta)
        finished.append(req.model)  # the member's done event is queued right after this
        return outcome

    gateway.call = recorded  # type: ignore[method-assign]
    run = Consortium(models=list(answers), arbiter="judge", store=False, gateway=gateway)
    events = []
    async with run.stream("Q") as stream:
        async for event in stream:
            events.append(event)
            if event.kind == "member_delta":
                break
        # Fall behind: both answers finish streaming while nothing is taken.
        await fake_openai.async_wait_for(lambda: {"m1", "m2"} <= set(finished), timeout=60)
        behind = iso_utc(time.time_ns())  # deltas made later were joined from waiting pieces
        events += [event async for event in stream]

    for model, reply in answers.items():
        deltas = [e for e in events if e.kind == "member_delta" and e.model == model]
        done = next(e for e in events if e.kind == "member_done" and e.model == model)
        assert "".join(d.text for d in deltas) == reply == done.text
        assert all(events.index(d) < events.index(done) for d in deltas)
        # What streamed while the consumer was away came as one delta, or two where the
        # other member's done event came in between (an event closes every open delta).
        assert 1 <= len([d for d in deltas if stamp(d.at) > stamp(behind)]) <= 2
    assert len([e for e in events if e.kind == "member_delta"]) < 2 * 60
