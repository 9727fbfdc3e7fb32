"""The engine against the loopback OpenAI-compatible server, through llm's real OpenAI plugin."""

from __future__ import annotations

import asyncio
import json

import pytest

from consortium_lab import Consortium, ConsortiumConfig
from consortium_lab.config.catalog import UnknownModelError
from consortium_lab.config.consortium import ConfigWarning
from consortium_lab.engine.events import parse_event

from fake_openai import Fault, ModelScript
from helpers import arbiter_reply, last_user_text, member_reply


def members(fake, n=2, **script):
    ids = []
    for i in range(1, n + 1):
        ids.append(
            fake.add_model(
                f"m{i}", ModelScript(reply=member_reply(f"Answer {i}.", 0.7 + i / 100), **script)
            )
        )
    return ids


async def collect(run):
    return [e async for e in run]


async def test_events_in_order_and_result_shape(fake_openai):
    ids = members(fake_openai, 3, chunk_words=1)
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Final.", 0.92)))
    consortium = Consortium(models=ids, arbiter="judge", store=False)
    events = await collect(consortium.stream("Why?"))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[1] == "iteration_started"
    assert kinds[-1] == "run_finished"
    assert kinds.count("member_done") == 3
    assert "member_delta" in kinds and "arbiter_delta" in kinds
    assert kinds.index("synthesis") > max(i for i, k in enumerate(kinds) if k == "member_done")
    # every event round-trips through JSON
    for event in events:
        assert parse_event(json.loads(event.model_dump_json())) == event
    # deltas of a member add up to its full text
    for model in ids:
        deltas = "".join(e.text for e in events if e.kind == "member_delta" and e.model == model)
        done = next(e for e in events if e.kind == "member_done" and e.model == model)
        assert deltas == done.text
        assert done.answer.startswith("Answer") and done.confidence is not None
        assert done.usage.output_tokens and done.served_by == model


async def test_run_result_export_matches_seed_shape(fake_openai):
    ids = members(fake_openai, 2)
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Final.", 0.92, areas=("x",))))
    result = await Consortium(models=ids, arbiter="judge", store=False).run("Why?")
    data = result.to_dict()
    assert data["original_prompt"] == "Why?"
    assert {r["model"] for r in data["model_responses"]} == set(ids)
    assert data["model_responses"][0]["confidence"] == pytest.approx(0.71)
    assert data["synthesis"]["synthesis"] == "Final."
    assert data["synthesis"]["confidence"] == pytest.approx(0.92)
    assert data["synthesis"]["refinement_areas"] == ["x"]
    assert data["synthesis"]["needs_iteration"] is False
    assert data["metadata"]["models_used"] == ids
    assert data["metadata"]["arbiter"] == "judge"
    assert data["metadata"]["iteration_count"] == 1
    assert "T" in data["metadata"]["timestamp"]
    frame = result.to_pandas()
    assert len(frame) == 2 and set(frame["model"]) == set(ids)
    assert "Final." in result._repr_html_()


async def test_members_get_templates_and_wrapped_prompt(fake_openai):
    ids = members(fake_openai, 1)
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.95)))
    await Consortium(models=ids, arbiter="judge", system_prompt="Be brief.", store=False).run("Q?")
    member_req = fake_openai.requests_for("m1")[0].json
    system = member_req["messages"][0]
    assert system["role"] == "system" and "<thinking>" in system["content"]
    assert "<user_instructions>Be brief.</user_instructions>" in system["content"]
    assert last_user_text(member_req) == "<prompt><instruction>Q?</instruction></prompt>"
    arbiter_text = last_user_text(fake_openai.requests_for("judge")[0].json)
    assert "<arbiter_prompt>" in arbiter_text and "Answer 1." in arbiter_text
    assert "Be brief." in arbiter_text


async def test_iterates_until_threshold_with_iteration_prompt(fake_openai):
    ids = members(fake_openai, 2)
    replies = iter(
        [
            arbiter_reply("Draft.", 0.5, needs_iteration=True, areas=("units",)),
            arbiter_reply("Better.", 0.85),
        ]
    )
    fake_openai.add_model("judge", ModelScript(reply=lambda body: next(replies)))
    result = await Consortium(models=ids, arbiter="judge", max_iterations=3, store=False).run("Q")
    assert len(result.iterations) == 2
    assert result.synthesis.synthesis == "Better."
    second = last_user_text(fake_openai.requests_for("m1")[1].json)
    assert "<iteration_prompt>" in second and "Draft." in second and "<area>units</area>" in second
    # the member keeps its own context within the run: its first answer precedes the new prompt
    messages = fake_openai.requests_for("m1")[1].json["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "Answer 1." in messages[2]["content"]


async def test_minimum_and_maximum_iterations(fake_openai):
    ids = members(fake_openai, 1)
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.99)))
    result = await Consortium(
        models=ids, arbiter="judge", minimum_iterations=2, max_iterations=3, store=False
    ).run("Q")
    assert len(result.iterations) == 2
    fake_openai.add_model(
        "judge2", ModelScript(reply=arbiter_reply("F", 0.1, needs_iteration=True))
    )
    result = await Consortium(models=ids, arbiter="judge2", max_iterations=3, store=False).run("Q")
    assert len(result.iterations) == 3


async def test_member_without_confidence_has_none(fake_openai):
    fake_openai.add_model("m1", ModelScript(reply=member_reply("A", None)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    result = await Consortium(models=["m1"], arbiter="judge", store=False).run("Q")
    assert result.final_answers[0].confidence is None
    assert result.to_dict()["model_responses"][0]["confidence"] is None


async def test_failing_member_does_not_end_run(fake_openai):
    fake_openai.add_model("ok", ModelScript(reply=member_reply("fine")))
    fake_openai.add_model("bad", ModelScript(fail_always=Fault.context_length_exceeded()))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    events = await collect(
        Consortium(models=["ok", "bad"], arbiter="judge", store=False).stream("Q")
    )
    failed = [e for e in events if e.kind == "member_failed"]
    assert len(failed) == 1 and failed[0].model == "bad"
    assert failed[0].error_type == "context_window"
    assert "context" in failed[0].error.lower()
    assert events[-1].kind == "run_finished"


async def test_every_member_failing_fails_run_naming_errors(fake_openai):
    fake_openai.add_model("bad1", ModelScript(fail_always=Fault.status(400, "nope one")))
    fake_openai.add_model("bad2", ModelScript(fail_always=Fault.status(400, "nope two")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F")))
    result = await Consortium(models=["bad1", "bad2"], arbiter="judge", store=False).run("Q")
    assert result.status == "failed"
    assert "nope one" in result.errors["bad1#1"] and "nope two" in result.errors["bad2#1"]
    assert "bad1#1" in result.error and "bad2#1" in result.error
    assert fake_openai.requests_for("judge") == []


async def test_empty_answer_and_runaway_are_member_failures(fake_openai):
    fake_openai.add_model("empty", ModelScript(reply=""))
    fake_openai.add_model("runaway", ModelScript(fail_always=Fault.runaway()))
    fake_openai.add_model("ok", ModelScript(reply=member_reply("fine")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    consortium = Consortium(
        models=["empty", "runaway", "ok"],
        arbiter="judge",
        store=False,
        limits={"max_output_tokens": 200},
    )
    result = await consortium.run("Q")
    by_model = {m.model: m for m in result.iterations[0].members}
    assert by_model["empty"].error_type == "empty"
    assert by_model["runaway"].error_type == "cut_off"
    assert "200 tokens" in by_model["runaway"].error
    assert by_model["ok"].status == "done"
    await fake_openai.async_wait_for(lambda: "runaway" in fake_openai.disconnects, timeout=5)


async def test_first_token_timeout(fake_openai):
    fake_openai.add_model("slow", ModelScript(fail_always=Fault.hang()))
    fake_openai.add_model("ok", ModelScript(reply=member_reply("fine")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    result = await Consortium(
        models=["slow", "ok"], arbiter="judge", store=False, limits={"first_token_timeout": 0.3}
    ).run("Q")
    slow = next(m for m in result.iterations[0].members if m.model == "slow")
    assert slow.error_type == "timeout" and "first token" in slow.error


async def test_members_run_concurrently(fake_openai):
    ids = members(fake_openai, 4, first_token_delay=0.4)
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    consortium = Consortium(models=ids, arbiter="judge", store=False)
    await consortium.run("Q")
    starts = sorted(r.time for m in ids for r in fake_openai.requests_for(m))
    # all four requests arrive before the first one could have finished
    assert starts[-1] - starts[0] < 0.4


async def test_cancel_closes_in_flight_calls(fake_openai):
    fake_openai.add_model("slow1", ModelScript(reply="word " * 500, token_delay=0.02))
    fake_openai.add_model("slow2", ModelScript(reply="word " * 500, token_delay=0.02))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F")))
    run = Consortium(models=["slow1", "slow2"], arbiter="judge", store=False).stream("Q")
    seen = 0
    async for event in run:
        if event.kind == "member_delta":
            seen += 1
            if seen == 6:
                await run.cancel()
    assert run.result.status == "cancelled"
    await fake_openai.async_wait_for(lambda: len(fake_openai.disconnects) >= 2, timeout=5)
    assert set(fake_openai.disconnects) >= {"slow1", "slow2"}


async def test_cancelling_consumer_task_closes_calls(fake_openai):
    fake_openai.add_model("slow1", ModelScript(reply="word " * 500, token_delay=0.02))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F")))
    consortium = Consortium(models=["slow1"], arbiter="judge", store=False)
    started = asyncio.Event()

    async def consume():
        async for event in consortium.stream("Q"):
            if event.kind == "member_delta":
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_openai.async_wait_for(lambda: "slow1" in fake_openai.disconnects, timeout=5)


async def test_compare_mode_has_no_arbiter(fake_openai):
    ids = members(fake_openai, 2)
    result = await Consortium(models=ids, mode="compare", store=False).run("Q")
    assert result.synthesis is None and len(result.iterations) == 1
    assert result.to_dict()["metadata"]["arbiter"] is None
    assert len(result.final_answers) == 2


async def test_council_mode_peer_review_then_chair(fake_openai):
    def reviewer(body):
        text = last_user_text(body)
        if "<rank_prompt>" in text:
            assert "<model>" not in text  # anonymized
            return '<ranking><rank position="1">2</rank><rank position="2">1</rank></ranking>'
        return member_reply("answer", 0.8)

    fake_openai.add_model("a", ModelScript(reply=reviewer))
    fake_openai.add_model("b", ModelScript(reply=reviewer))
    fake_openai.add_model("chair", ModelScript(reply=arbiter_reply("Chaired.", 0.9)))
    result = await Consortium(models=["a", "b"], arbiter="chair", mode="council", store=False).run(
        "Q"
    )
    stages = [m.stage for m in result.iterations[0].members]
    assert stages.count("answer") == 2 and stages.count("peer_review") == 2
    chair_prompt = last_user_text(fake_openai.requests_for("chair")[0].json)
    assert "Aggregate peer ranking" in chair_prompt and "best first: 2, 1" in chair_prompt
    assert result.synthesis.synthesis == "Chaired."


async def test_rank_judging_picks_top_answer(fake_openai):
    fake_openai.add_model("a", ModelScript(reply=member_reply("Alpha.", 0.6)))
    fake_openai.add_model("b", ModelScript(reply=member_reply("Beta.", 0.7)))
    fake_openai.add_model(
        "ranker",
        ModelScript(
            reply='Reasoning: b is better.\n<ranking><rank position="1">2</rank>'
            '<rank position="2">1</rank></ranking>'
        ),
    )
    result = await Consortium(
        models=["a", "b"],
        arbiter="ranker",
        judging_method="rank",
        confidence_threshold=0.5,
        store=False,
    ).run("Q")
    assert "<rank_prompt>" in last_user_text(fake_openai.requests_for("ranker")[0].json)
    assert result.synthesis.synthesis == "Beta."
    assert result.synthesis.confidence == pytest.approx(0.7)  # top member's own
    assert result.synthesis.ranking == [2, 1]


async def test_unparseable_arbiter_output_is_kept_with_warning(fake_openai):
    ids = members(fake_openai, 1)
    fake_openai.add_model("judge", ModelScript(reply="I think the answer is 42."))
    result = await Consortium(models=ids, arbiter="judge", max_iterations=1, store=False).run("Q")
    assert result.synthesis.parse_ok is False
    assert result.synthesis.warnings
    assert "42" in result.synthesis.synthesis
    assert result.synthesis.raw == "I think the answer is 42."


async def test_arbiter_failure_fails_run_keeping_members(fake_openai):
    ids = members(fake_openai, 1)
    fake_openai.add_model("judge", ModelScript(fail_always=Fault.status(400, "arbiter broke")))
    result = await Consortium(models=ids, arbiter="judge", store=False).run("Q")
    assert result.status == "failed" and "arbiter broke" in result.error
    assert result.iterations[0].members[0].status == "done"


async def test_per_member_options_and_system_prompts(fake_openai):
    fake_openai.add_model("m", ModelScript(reply=member_reply("x")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    await Consortium(
        models=["m:2"],
        arbiter="judge",
        store=False,
        member_options={"m": {"temperature": 0.2}, "m#2": {"temperature": 0.9}},
        member_system_prompts={"m#2": "You are terse."},
    ).run("Q")
    bodies = [r.json for r in fake_openai.requests_for("m")]
    assert sorted(b.get("temperature") for b in bodies) == [0.2, 0.9]
    terse = next(b for b in bodies if b.get("temperature") == 0.9)
    assert "You are terse." in terse["messages"][0]["content"]


async def test_unknown_model_lists_close_matches(fake_openai):
    fake_openai.add_model("alpha-model", ModelScript())
    with pytest.raises(UnknownModelError) as info:
        Consortium(models=["alpha-modle"], arbiter="alpha-model", store=False)
    assert "alpha-model" in str(info.value) and "models" in str(info.value)
    with pytest.raises(UnknownModelError, match="arbiter"):
        Consortium(models=["alpha-model"], arbiter="nope", store=False)


def test_run_sync_outside_and_inside_a_loop(fake_openai):
    ids = members(fake_openai, 1)
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    consortium = Consortium(models=ids, arbiter="judge", store=False)
    assert consortium.run_sync("Q").text == "F"

    async def inside():
        with pytest.raises(RuntimeError, match=r"await consortium.run"):
            consortium.run_sync("Q")

    asyncio.run(inside())


async def test_multi_turn_keeps_each_members_own_history(fake_openai):
    fake_openai.add_model("a", ModelScript(reply=member_reply("I am A.")))
    fake_openai.add_model("b", ModelScript(reply=member_reply("I am B.")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    conversation = Consortium(models=["a", "b"], arbiter="judge", store=False).conversation()
    await conversation.ask("first")
    await conversation.ask("second")
    for me, other in (("a", "I am B."), ("b", "I am A.")):
        messages = fake_openai.requests_for(me)[-1].json["messages"]
        texts = " ".join(str(m["content"]) for m in messages)
        assert f"I am {me.upper()}." in texts and other not in texts
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


def test_config_object_and_kwargs_agree(fake_openai):
    ids = members(fake_openai, 2)
    fake_openai.add_model("judge", ModelScript())
    with pytest.warns(ConfigWarning, match="confidence 90 read as 0.9"):
        config = ConsortiumConfig(
            models={ids[0]: 1, ids[1]: 1}, arbiter="judge", confidence_threshold=90
        )
    a = Consortium(config, store=False)
    b = Consortium(models=ids, arbiter="judge", confidence_threshold=0.9, store=False)
    assert a.config.models == b.config.models
    assert a.config.confidence_threshold == b.config.confidence_threshold == 0.9


@pytest.mark.parametrize("stage", ["members", "arbiter"])
async def test_cancel_from_another_task(fake_openai, stage):
    """A stop button lives in another task than the loop consuming the events."""
    fake_openai.add_model("m", ModelScript(reply=member_reply("x " * 300), token_delay=0.01))
    fake_openai.add_model(
        "judge", ModelScript(reply=arbiter_reply("y " * 300, 0.9), token_delay=0.01)
    )
    run = Consortium(models=["m"], arbiter="judge", store=False).stream("Q")
    trigger = "member_delta" if stage == "members" else "arbiter_delta"
    seen = asyncio.Event()

    async def consume():
        events = []
        async for event in run:
            events.append(event)
            if event.kind == trigger:
                seen.set()
        return events

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 10)
    await run.cancel()
    events = await asyncio.wait_for(consumer, 10)
    assert events[-1].kind == "run_finished" and events[-1].status == "cancelled"
    assert not any(e.kind == "run_failed" for e in events)
    assert run.result.status == "cancelled"
    model = "m" if stage == "members" else "judge"
    await fake_openai.async_wait_for(lambda: model in fake_openai.disconnects, timeout=5)
