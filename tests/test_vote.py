"""Vote mode: the members answer, the most frequent answer wins, no arbiter is asked.

Each member's answer is scripted on the loopback server per instance (instance N > 1 carries
``seed=N``, see compat's distinct samples), so every tally below is known in advance.
"""

from __future__ import annotations

import json
import re

import pytest

from consortium_lab import Consortium
from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.engine.records import MemberRecord
from consortium_lab.engine.vote import default_extractor, tally
from consortium_lab.gateway.pricing import PriceTable, estimate
from consortium_lab.sinks.runlog.store import RunStore

from fake_openai import Fault, ModelScript
from helpers import cli, member_reply


def per_instance(replies: list[tuple[str, float | None]]):
    """A reply callable: instance N (seed N, instance 1 has none) answers ``replies[N-1]``."""

    def reply(body):
        answer, confidence = replies[(body.get("seed") or 1) - 1]
        return member_reply(answer, confidence)

    return reply


def sampler(fake, replies, model="s"):
    fake.add_model(model, ModelScript(reply=per_instance(replies)))
    return f"{model}:{len(replies)}"


async def test_the_most_frequent_answer_wins_without_an_arbiter(fake_openai):
    spec = sampler(
        fake_openai,
        [("42", 0.5), ("42", 0.6), ("  42\n", 0.4), ("41", 0.9), ("Forty-two", 0.9)],
    )
    consortium = Consortium(
        models=[spec],
        mode="vote",
        member_options={"s": {"temperature": 0.8}},
        store=False,
    )
    run = consortium.stream("What is 40 + 2?")
    events = [e async for e in run]
    kinds = [e.kind for e in events]
    assert kinds.count("member_done") == 5 and kinds.count("synthesis") == 1
    assert "arbiter_delta" not in kinds and kinds[-1] == "run_finished"
    # five member calls and nothing else: no arbiter, each a distinct sample at 0.8
    sent = fake_openai.requests_for("s")
    assert len(sent) == 5 and len(fake_openai.requests) == 5
    assert sorted(r.json.get("seed") or 1 for r in sent) == [1, 2, 3, 4, 5]
    assert {r.json.get("temperature") for r in sent} == {0.8}
    result = run.result
    assert result.status == "completed"
    assert result.text == "42" and result.confidence == pytest.approx(0.6)
    decision = result.synthesis
    assert decision is not None and decision.model == "vote" and decision.tie_break is None
    assert [(v.key, v.count) for v in decision.votes] == [("42", 3), ("41", 1), ("forty-two", 1)]
    assert decision.votes[0].members == ["s#1", "s#2", "s#3"]
    assert decision.dissent == "'41': 1 vote (s#4)\n'Forty-two': 1 vote (s#5)"
    assert decision.analysis.startswith("3 of 5 votes (60%) for '42'; 3 distinct answers.")
    finished = events[-1]
    assert finished.kind == "run_finished" and finished.confidence == pytest.approx(0.6)
    # the same result shape as the other modes
    data = result.to_dict()
    assert data["synthesis"]["synthesis"] == "42"
    assert data["synthesis"]["confidence"] == pytest.approx(0.6)
    assert data["metadata"]["mode"] == "vote" and data["metadata"]["arbiter"] is None


async def test_a_tie_is_broken_by_stated_confidence(fake_openai):
    spec = sampler(fake_openai, [("A", 0.6), ("B", 0.9), ("A", 0.6), ("B", 0.8)])
    result = await Consortium(models=[spec], mode="vote", store=False).run("Q?")
    decision = result.synthesis
    assert decision is not None
    assert result.text == "B" and decision.tie_break == "confidence"
    assert result.confidence == pytest.approx(0.5)
    assert [(v.key, v.count) for v in decision.votes] == [("b", 2), ("a", 2)]
    assert decision.votes[0].confidence == pytest.approx(1.7)
    assert "Tie between 2 answers with 2 votes, broken by the voters' stated confidence" in (
        decision.analysis
    )


async def test_a_tie_of_confidence_too_is_broken_by_config_order(fake_openai):
    fake_openai.add_model("first", ModelScript(reply=member_reply("Oslo", None)))
    fake_openai.add_model("second", ModelScript(reply=member_reply("Bergen", None)))
    result = await Consortium(models=["second", "first"], mode="vote", store=False).run("Q?")
    decision = result.synthesis
    assert decision is not None
    # "second" is first in the config, so its answer wins the tie
    assert result.text == "Bergen" and decision.tie_break == "order"
    assert "broken by config order" in decision.analysis
    assert decision.dissent == "'Oslo': 1 vote (first#1)"


async def test_a_failed_member_casts_no_vote(fake_openai):
    fake_openai.add_model("ok1", ModelScript(reply=member_reply("7", 0.8)))
    fake_openai.add_model("ok2", ModelScript(reply=member_reply("7", 0.7)))
    fake_openai.add_model("bad", ModelScript(fail_always=Fault.status(400, "no such thing")))
    run = Consortium(models=["bad", "ok1", "ok2"], mode="vote", store=False).stream("Q?")
    events = [e async for e in run]
    failed = [e for e in events if e.kind == "member_failed"]
    assert len(failed) == 1 and failed[0].model == "bad"
    result = run.result
    assert result.status == "completed"
    assert result.text == "7" and result.confidence == pytest.approx(1.0)
    assert result.synthesis is not None and result.synthesis.votes[0].members == ["ok1#1", "ok2#1"]


async def test_no_readable_answer_is_reported_not_guessed(fake_openai):
    fake_openai.add_model("m", ModelScript(reply=member_reply("   ", 0.5)))
    result = await Consortium(models=["m:2"], mode="vote", store=False).run("Q?")
    decision = result.synthesis
    assert decision is not None and decision.votes == [] and decision.parse_ok is False
    assert result.status == "completed_with_warnings"
    assert result.warnings == ["no member's answer could be read: no vote was cast"]
    assert "No readable answer from m#1, m#2" not in decision.analysis  # no vote: one sentence
    assert decision.analysis == "No vote was cast: no member's answer could be read."


def _last_number(answer: str) -> str | None:
    numbers = re.findall(r"-?\d+", answer.replace(",", ""))
    return numbers[-1] if numbers else None


async def test_a_pluggable_extractor_decides_what_counts_as_the_same_answer(fake_openai):
    spec = sampler(
        fake_openai,
        [("The sum is 1,200.", 0.5), ("1200", 0.5), ("I think 1300", 0.9), ("no idea", 0.9)],
    )
    result = await Consortium(models=[spec], mode="vote", store=False, extractor=_last_number).run(
        "Q?"
    )
    decision = result.synthesis
    assert decision is not None
    assert [(v.key, v.count) for v in decision.votes] == [("1200", 2), ("1300", 1)]
    assert result.text == "The sum is 1,200." and result.confidence == pytest.approx(2 / 3)
    assert decision.analysis.endswith("No readable answer from s#4.")


async def test_a_vote_is_logged_like_other_runs(fake_openai, tmp_path):
    spec = sampler(fake_openai, [("yes", 0.9), ("no", 0.6), ("yes", 0.5)])
    with RunStore(tmp_path / "runs.db") as store:
        run = Consortium(models=[spec], mode="vote", store=store).stream("Q?")
        seen = [event async for event in run]
        row = store.get_run_row(run.run_id)
        assert row is not None
        assert row["status"] == "completed" and row["mode"] == "vote" and row["arbiter"] is None
        (decision,) = store.arbiter_decisions(run.run_id)
        assert decision["model"] == "vote" and decision["synthesis"] == "yes"
        assert [(v["key"], v["count"]) for v in decision["votes"]] == [("yes", 2), ("no", 1)]
        assert decision["tie_break"] is None
        assert store.synthesis_records(run.run_id) == [run.result.synthesis]
        kept = [e for e in seen if e.kind not in ("member_delta", "arbiter_delta")]
        assert store.get_events(run.run_id) == kept


def test_tally_orders_counts_then_confidence_then_order():
    def rec(instance, answer, confidence=None):
        return MemberRecord(
            model="m", instance=instance, iteration=1, answer=answer, confidence=confidence
        )

    result = tally([rec(1, "b"), rec(2, "A", 0.2), rec(3, "a"), rec(4, "B", 0.2), rec(5, "c")])
    assert [(v.key, v.count) for v in result.votes] == [("b", 2), ("a", 2), ("c", 1)]
    assert result.tie_break == "order" and result.share == pytest.approx(0.4)
    assert default_extractor("  Paris\n is  nice ") == "paris is nice"
    with pytest.raises(TypeError, match=r"vote extractor: expected a string or None for m#1"):
        tally([rec(1, "x")], extractor=lambda answer: 3)  # type: ignore[arg-type,return-value]


def test_vote_mode_is_a_config_mode_that_upstream_can_read():
    config = ConsortiumConfig(models={"a": 3}, mode="vote", max_iterations=3)
    assert not config.has_arbiter
    data = json.loads(json.dumps(config.to_dict()))
    assert data["mode"] == "vote"
    assert ConsortiumConfig.from_dict(data).mode == "vote"
    with pytest.raises(ValueError, match="mode"):
        ConsortiumConfig(models={"a": 1}, mode="votes")
    # one call per member, once: no arbiter and no further iteration
    assert estimate(config, "Q?", PriceTable()).calls == 3


def test_the_cli_runs_a_vote(fake_openai):
    sampler(fake_openai, [("12", 0.9), ("12", 0.5), ("13", 0.9)])
    proc = cli(fake_openai.env(), "run", "6 + 6?", "-m", "s:3", "--mode", "vote", check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "12"
    assert "vote: 2 of 3 votes (67%) for '12'; 2 distinct answers." in proc.stderr
    assert "synthesis by" not in proc.stderr
