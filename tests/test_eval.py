"""Evaluations through the loopback server, whose replies are scripted per prompt so each
condition's correctness on each item is known in advance."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from consortium_lab import runs
from consortium_lab.eval import EvalStore, evaluate
from consortium_lab.eval.runner import BYPASS_NOTE
from consortium_lab.eval.stats import bootstrap_interval

from fake_openai import ModelScript
from helpers import arbiter_reply, last_user_text, member_reply

# Ten additions; item i asks "What is i + 100?" so the answer is 100 + i.
ITEMS = [
    {"id": f"q{i}", "prompt": f"What is {i} + 100?", "answer": str(100 + i)} for i in range(10)
]


def item_of(body: dict[str, Any]) -> int:
    text = last_user_text(body)
    found = [i for i in range(10) if f"What is {i} + 100?" in text]
    assert len(found) == 1, text
    return found[0]


def replying(correct_on: set[int], *, arbiter: bool = False) -> ModelScript:
    """A model right on the items in ``correct_on`` (off by one elsewhere)."""

    def reply(body: dict[str, Any]) -> str:
        i = item_of(body)
        value = 100 + i if i in correct_on else 101 + i
        if arbiter:
            return arbiter_reply(f"The sum is {value:,}.")
        return member_reply(f"It is {value}")

    return ModelScript(reply=reply)


@pytest.fixture
def trio(fake_openai: Any, tmp_path: Path) -> Any:
    fake_openai.add_model("m-good", replying(set(range(10))))
    fake_openai.add_model("m-half", replying({0, 2, 4, 6, 8}))
    fake_openai.add_model("m-arb", replying(set(range(8)), arbiter=True))
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in ITEMS) + "\n")
    return fake_openai


async def test_reported_accuracies_intervals_and_items(trio: Any, tmp_path: Path) -> None:
    report = await evaluate(
        tmp_path / "items.jsonl",
        models=["m-good", "m-half"],
        arbiter="m-arb",
        modes=["members", "consortium"],
        scorer="numeric",
        store=tmp_path / "runs.db",
        seed=3,
    )
    got = {c.name: (c.correct, c.n) for c in report.conditions}
    assert got == {"member:m-good": (10, 10), "member:m-half": (5, 10), "consortium": (8, 10)}
    half = report.condition("member:m-half")
    per_item = [1.0 if i % 2 == 0 else 0.0 for i in range(10)]
    assert (half.ci_low, half.ci_high) == bootstrap_interval(per_item, seed=3)
    assert report.condition("member:m-good").ci_low == 1.0
    assert all(c.tokens > 0 and c.latency_mean is not None for c in report.conditions)
    assert len(report.items) == 30
    wrong = {(r.item_id, r.condition) for r in report.items if not r.correct}
    assert wrong == {
        ("q1", "member:m-half"),
        ("q3", "member:m-half"),
        ("q5", "member:m-half"),
        ("q7", "member:m-half"),
        ("q9", "member:m-half"),
        ("q8", "consortium"),
        ("q9", "consortium"),
    }
    consortium_q0 = next(
        r for r in report.items if r.condition == "consortium" and r.item_id == "q0"
    )
    assert consortium_q0.answer == "The sum is 100." and consortium_q0.extracted == "100"
    # The same report is read back from the run log, and its runs are grouped under its tag.
    with EvalStore(tmp_path / "runs.db") as store:
        again = store.report(report.id, seed=3)
    assert again.conditions == report.conditions
    tagged = runs.list(tag=report.tag, path=tmp_path / "runs.db")
    assert {r["id"] for r in tagged} == {r.run_id for r in report.items}
    assert runs.list(tag="eval-nothing", path=tmp_path / "runs.db") == []


async def test_vote_condition_counts_answers_as_the_scorer_reads_them(
    trio: Any, tmp_path: Path
) -> None:
    trio.add_model("m-third", replying({0, 1, 2}))
    report = await evaluate(
        ITEMS,
        models=["m-good", "m-half", "m-third"],
        modes=["vote"],
        scorer="numeric",
        store=tmp_path / "runs.db",
    )
    # Odd items from 3 on: m-half and m-third give the same wrong sum and outvote m-good.
    vote = report.condition("vote")
    assert (vote.correct, vote.n) == (6, 10)
    wrong = sorted(r.item_id for r in report.items if not r.correct)
    assert wrong == ["q3", "q5", "q7", "q9"]
    assert trio.requests_for("m-arb") == []  # no arbiter is asked in a vote
    # Two members: the odd items tie 1-1, broken by config order (equal confidence).
    tied = await evaluate(
        ITEMS,
        models=["m-good", "m-half"],
        modes=["vote"],
        scorer="numeric",
        store=tmp_path / "runs.db",
    )
    assert tied.condition("vote").correct == 10
    run = runs.get(tied.items[1].run_id, path=tmp_path / "runs.db")
    assert run.synthesis is not None and run.synthesis.tie_break is not None


async def test_samples_are_distinct_and_never_shared_between_conditions(
    trio: Any, tmp_path: Path
) -> None:
    settings: dict[str, Any] = dict(
        models=["m-good"],
        arbiter="m-arb",
        modes=["members", "consortium"],
        scorer="numeric",
        samples=3,
        limit=2,
        store=tmp_path / "runs.db",
    )
    report = await evaluate(tmp_path / "items.jsonl", **settings)
    assert "member:m-good, consortium: sampled, so the cache was bypassed" in report.notes[0]
    assert report.condition("member:m-good").n == 6
    asked = trio.requests_for("m-good")
    # 2 items x 3 samples x 2 conditions (alone, and as the consortium's member).
    assert len(asked) == 12
    seeds = {(item_of(r.json), r.json.get("seed")) for r in asked}
    assert len(seeds) == 12, "every sample of every condition carries its own seed"
    # With cache="use", a second evaluation replays each sample's own answer and asks nothing.
    first = await evaluate(tmp_path / "items.jsonl", cache="use", **settings)
    assert any("never replayed into another" in note for note in first.notes)
    before = len(trio.requests_for("m-good"))
    await evaluate(tmp_path / "items.jsonl", cache="use", **settings)
    assert len(trio.requests_for("m-good")) == before == 24


async def test_a_vote_over_instances_is_sampled_and_bypasses_the_cache(
    trio: Any, tmp_path: Path
) -> None:
    settings: dict[str, Any] = dict(
        models=["m-half:3"],
        modes=["members", "vote"],
        scorer="numeric",
        limit=2,
        store=tmp_path / "runs.db",
    )
    report = await evaluate(ITEMS, **settings)
    assert report.settings["cache"] == {"member:m-half": "use", "vote": "bypass"}
    assert report.notes == [f"vote: {BYPASS_NOTE}"]
    assert len(trio.requests_for("m-half")) == 2 * (1 + 3)
    await evaluate(ITEMS, **settings)  # the member alone is replayed, the vote asked anew
    assert len(trio.requests_for("m-half")) == 2 * (1 + 3) + 2 * 3


async def test_bad_references_and_conditions_refuse_to_start(trio: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line 1: item x: the reference 'many' holds no number"):
        await evaluate(
            [{"id": "x", "prompt": "p", "answer": "many"}],
            models=["m-good"],
            modes=["members"],
            scorer="numeric",
            store=tmp_path / "r.db",
        )
    with pytest.raises(KeyError, match="no-such-config"):
        await evaluate(ITEMS, models=["m-good"], modes=["no-such-config"], store=tmp_path / "r.db")
    with pytest.raises(ValueError, match="condition\\(s\\) named twice: consortium"):
        await evaluate(
            ITEMS, models=["m-good"], modes=["consortium", "consortium"], store=tmp_path / "r.db"
        )
    with pytest.raises(Exception, match="no-such-model"):
        await evaluate(ITEMS, models=["no-such-model"], modes=["members"], store=tmp_path / "r.db")
    assert trio.requests == []
    if (tmp_path / "r.db").exists():
        conn = sqlite3.connect(tmp_path / "r.db")
        assert conn.execute("SELECT count(*) FROM evaluations").fetchone() == (0,)


async def test_judge_verdicts_are_kept_and_cached(trio: Any, tmp_path: Path) -> None:
    import re

    def grade(body: dict[str, Any]) -> str:
        text = last_user_text(body)
        reference = re.search(r"<reference>(.*?)</reference>", text, re.S)
        answer = re.search(r"<answer>(.*?)</answer>", text, re.S)
        assert reference and answer, text
        same = reference.group(1).strip() in answer.group(1)
        return f"Compared.<verdict>{'CORRECT' if same else 'INCORRECT'}</verdict>"

    trio.add_model("m-judge", ModelScript(reply=grade))
    settings: dict[str, Any] = dict(
        models=["m-half"],
        modes=["members"],
        scorer="judge",
        limit=4,
        scorer_options={"model": "m-judge"},
        store=tmp_path / "runs.db",
    )
    report = await evaluate(ITEMS, **settings)
    assert [r.correct for r in report.items] == [True, False, True, False]
    assert all(r.verdict and "<verdict>" in r.verdict for r in report.items)
    assert len(trio.requests_for("m-judge")) == 4
    again = await evaluate(ITEMS, **settings)
    assert [r.verdict for r in again.items] == [r.verdict for r in report.items]
    assert len(trio.requests_for("m-judge")) == 4  # graded once, replayed from the cache


async def test_a_saved_config_is_a_condition_and_charts_mark_the_front(
    trio: Any, tmp_path: Path
) -> None:
    from consortium_lab import configs
    from consortium_lab.apps.eval_html import write_html
    from consortium_lab.config.consortium import ConsortiumConfig
    from consortium_lab.eval.charts import accuracy_chart, tradeoff_chart

    configs.save("pair", ConsortiumConfig(models={"m-good": 1, "m-half": 1}, arbiter="m-arb"))
    report = await evaluate(
        ITEMS,
        models=["m-good", "m-half"],
        modes=["members", "pair"],
        scorer="numeric",
        store=tmp_path / "runs.db",
    )
    assert report.condition("pair").correct == 8

    def values(spec: dict[str, Any], layer: int) -> list[dict[str, Any]]:
        # Altair lifts data that every layer shares to the top of the spec.
        return (spec["layer"][layer].get("data") or spec["data"])["values"]

    rows = values(accuracy_chart(report).to_dict(), 0)
    assert [(r["condition"], r["label"]) for r in rows] == [
        ("member:m-good", "10/10"),
        ("member:m-half", "5/10"),
        ("pair", "8/10"),
    ]
    latency = tradeoff_chart(report, "latency").to_dict()
    points = values(latency, 1)
    front = {p["condition"] for p in points if p["front"]}
    # The most accurate condition is always on the front; a less accurate one is on it only
    # when it is also faster than everything more accurate.
    assert "member:m-good" in front
    for p in points:
        better = [q for q in points if q["accuracy"] > p["accuracy"] and q["x"] <= p["x"]]
        assert (p["condition"] in front) == (not better)
    page = write_html(report, tmp_path / "r.html").read_text()
    assert "Accuracy per condition" in page and "member:m-half" in page


async def test_council_condition_scores_the_chairman_synthesis(trio: Any, tmp_path: Path) -> None:
    def reviewer(body: dict[str, Any]) -> str:
        text = last_user_text(body)
        if "<rank_prompt>" in text:
            return '<ranking><rank position="1">1</rank><rank position="2">2</rank></ranking>'
        return member_reply(f"It is {100 + item_of(body)}")

    trio.add_model("r-a", ModelScript(reply=reviewer))
    trio.add_model("r-b", ModelScript(reply=reviewer))
    report = await evaluate(
        ITEMS[:4],
        models=["r-a", "r-b"],
        arbiter="m-arb",
        modes=["council"],
        scorer="numeric",
        store=tmp_path / "runs.db",
    )
    assert report.condition("council").correct == 4
    run = runs.get(report.items[0].run_id, path=tmp_path / "runs.db")
    assert [m.stage for m in run.iterations[0].members].count("peer_review") == 2
    assert report.items[0].answer == "The sum is 100."
