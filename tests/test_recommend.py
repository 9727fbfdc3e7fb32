"""consortium_lab.recommend: conditions (margin, Pareto fronts), the run log's per-model
figures, the prompt-topic suggestion, not enough history, the CLI, the lazy scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from consortium_lab import Consortium, recommend
from consortium_lab.apps.cli import main
from consortium_lab.recommender.conditions import advise, conditions_from, pareto_front
from consortium_lab.sinks.runlog import RunStore
from recommend_data import COOKING_PROMPTS, PYTHON_PROMPTS, script_topic_models

from fake_openai import Fault, ModelScript
from helpers import member_reply

# Accuracy, cost, mean latency: "vote" is within 2 points of "consortium" at a third of the
# cost; "member:small" is the cheapest of all but 20 points down; "member:big" is dominated
# by "vote" in cost (less accurate, dearer) but is the fastest.
CONDITIONS = [
    {"name": "member:small", "accuracy": 0.60, "cost": 0.10, "latency_mean": 1.0, "n": 50},
    {"name": "member:big", "accuracy": 0.75, "cost": 1.00, "latency_mean": 0.5, "n": 50},
    {"name": "vote", "accuracy": 0.79, "cost": 0.70, "latency_mean": 3.0, "n": 50},
    {"name": "consortium", "accuracy": 0.80, "cost": 2.10, "latency_mean": 6.0, "n": 50},
]


def test_cheapest_condition_within_the_margin_with_its_numbers():
    advice = advise(CONDITIONS, margin=0.02)
    assert advice.best.name == "consortium"
    assert advice.accuracy_floor == pytest.approx(0.78)
    assert advice.within_margin == ["vote", "consortium"]
    assert advice.choice.name == "vote" and advice.choice.cost == 0.70
    assert advice.cost_saved == pytest.approx(1.40)
    assert "vote (79.0%)" in advice.summary and "consortium (80.0%)" in advice.summary
    # A wider margin lets the single big model in; a zero margin keeps the best.
    assert advise(CONDITIONS, margin=0.05).choice.name == "vote"
    assert advise(CONDITIONS, margin=0.20).choice.name == "member:small"
    assert advise(CONDITIONS, margin=0.0).choice.name == "consortium"


def test_pareto_fronts_of_accuracy_against_cost_and_latency():
    advice = advise(CONDITIONS)
    assert [c.name for c in advice.pareto_cost] == ["member:small", "vote", "consortium"]
    assert [c.name for c in advice.pareto_latency] == ["member:big", "vote", "consortium"]
    assert advice.pareto_cost[1].accuracy == 0.79  # the numbers come with each point
    # An equal point does not dominate its twin; a missing measure leaves the front.
    twins = conditions_from(
        [
            {"name": "a", "accuracy": 0.5, "cost": 1.0},
            {"name": "b", "accuracy": 0.5, "cost": 1.0},
            {"name": "c", "accuracy": 0.9},
        ]
    )
    assert [c.name for c in pareto_front(twins, "cost")] == ["a", "b"]
    unpriced = advise(twins)
    assert unpriced.unpriced == ["c"] and unpriced.best.name == "c"
    assert unpriced.choice.name == "c"  # nothing priced within the margin: the best


def test_conditions_accept_objects_and_the_whole_eval_output():
    class Row:
        def __init__(self, name: str, accuracy: float, cost: float) -> None:
            self.name, self.accuracy, self.cost = name, accuracy, cost

    advice = advise([Row("x", 0.5, 1.0), Row("y", 0.51, 3.0)], margin=0.05)
    assert advice.choice.name == "x"
    assert advise({"conditions": CONDITIONS, "items": []}).best.name == "consortium"

    class Result(BaseModel):  # an evaluation result model: iterable, yet read by attribute
        conditions: list[dict]

    assert advise(Result(conditions=CONDITIONS)).choice.name == "vote"
    # A DataFrame's rows; its NaN is a missing value.
    frame = pd.DataFrame([*CONDITIONS, {"name": "judge", "accuracy": 0.1}])
    from_frame = advise(frame)
    assert from_frame.choice.name == "vote" and from_frame.unpriced == ["judge"]


@pytest.mark.parametrize(
    ("conditions", "margin", "message"),
    [
        ([], 0.02, "no conditions"),
        ([{"name": "a"}], 0.02, "a: missing accuracy"),
        ([{"accuracy": 0.5}], 0.02, "condition 1: missing name"),
        ([{"name": "a", "accuracy": 1.5}], 0.02, "a: accuracy"),
        ([{"name": "a", "accuracy": 0.5, "cost": -1}], 0.02, "a: cost"),
        ([{"name": "a", "accuracy": 0.5}, {"name": "a", "accuracy": 0.6}], 0.02, "given twice"),
        (CONDITIONS, 1.5, "margin must be between 0 and 1"),
    ],
)
def test_bad_conditions_are_refused_by_name(conditions, margin, message):
    with pytest.raises(ValueError, match=message):
        advise(conditions, margin=margin)


async def _topic_log(fake_openai, path) -> None:
    config = script_topic_models(fake_openai)
    with RunStore(path) as store:
        consortium = Consortium(models=config["models"], arbiter=config["arbiter"], store=store)
        for prompt in PYTHON_PROMPTS + COOKING_PROMPTS:
            result = await consortium.run(prompt)
            assert result.status == "completed"


async def test_suggests_the_members_that_did_best_on_similar_prompts(fake_openai, tmp_path):
    db = tmp_path / "runs.db"
    await _topic_log(fake_openai, db)
    advice = recommend("How do I shuffle a python list?", path=db)
    hint = advice.for_prompt
    assert hint is not None and hint.enough_history
    assert hint.support == 5 and hint.history == 10
    assert {s.prompt for s in hint.similar} == set(PYTHON_PROMPTS)
    assert hint.members == ["py-expert", "chef"]  # two members per past run: two suggested
    assert hint.message == "For prompts like this: py-expert, chef (5 similar past runs)"
    by_model = {s.model: s for s in hint.scores}
    assert by_model["py-expert"].agreement_rate == 1.0 and by_model["chef"].agreement_rate == 0.0

    cooking = recommend("Can I cook onions in the oven?", path=db, size=1).for_prompt
    assert cooking is not None and cooking.members == ["chef"] and cooking.support == 5
    # Only models that can be used now are suggested.
    narrowed = recommend("Sort a python list", path=db, available={"chef"}).for_prompt
    assert narrowed is not None and narrowed.members == ["chef"]

    # Over the whole log each expert agreed on its own topic only: half its runs.
    stats = {s.model: s for s in advice.models}
    assert set(stats) == {"py-expert", "chef"} and advice.runs == 10
    for s in stats.values():
        assert (s.runs, s.calls, s.judged, s.agreed, s.failures) == (10, 10, 10, 5, 0)
        assert s.agreement_rate == 0.5 and s.latency_mean_ms is not None
        assert s.latency_p95_ms is not None and s.latency_p95_ms >= s.latency_mean_ms * 0.5
        assert s.cost_mean is None  # the loopback models have no price


async def test_not_enough_history_instead_of_a_guess(fake_openai, tmp_path):
    db = tmp_path / "runs.db"
    empty = recommend("How do I sort a python list?", path=db)
    assert empty.runs == 0 and empty.models == [] and not db.exists()  # nothing created
    assert empty.for_prompt is not None and not empty.for_prompt.enough_history
    assert empty.for_prompt.members == []
    assert empty.for_prompt.message == (
        "Not enough history: 0 past runs with a synthesis, at least 5 needed."
    )
    await _topic_log(fake_openai, db)
    strict = recommend("How do I shuffle a python list?", path=db, min_runs=6).for_prompt
    assert strict is not None and not strict.enough_history and strict.members == []
    assert strict.support == 5
    assert strict.message == (
        "Not enough history for prompts like this: 5 similar past runs, at least 6 needed."
    )
    unrelated = recommend("What is the capital of France?", path=db).for_prompt
    assert unrelated is not None and not unrelated.enough_history and unrelated.support == 0


async def test_failures_count_against_a_model(fake_openai, tmp_path):
    fake_openai.add_model("steady", ModelScript(reply=member_reply("Forty two.", 0.9)))
    fake_openai.add_model(
        "broken", ModelScript(fail_always=Fault.status(400, "bad request", should_retry=False))
    )
    from helpers import arbiter_reply

    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Forty two.", 0.9)))
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        consortium = Consortium(models=["steady", "broken"], arbiter="judge", store=store)
        for i in range(2):
            await consortium.run(f"What is six times seven, take {i}?")
    stats = {s.model: s for s in recommend(path=db).models}
    assert stats["broken"].failures == 2 and stats["broken"].failure_rate == 1.0
    assert stats["broken"].agreed == 0 and stats["broken"].latency_mean_ms is None
    assert stats["steady"].failure_rate == 0.0 and stats["steady"].agreement_rate == 1.0
    assert [s.model for s in recommend(path=db).models] == ["steady", "broken"]


async def test_cli_prints_one_json_object(fake_openai, tmp_path):
    db = tmp_path / "runs.db"
    await _topic_log(fake_openai, db)
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"conditions": CONDITIONS, "items": []}))
    runner = CliRunner()
    done = runner.invoke(
        main,
        [
            "recommend",
            "How do I shuffle a python list?",
            "--eval",
            str(evaluation),
            "--db",
            str(db),
            "--margin",
            "0.02",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["evaluation"]["choice"]["name"] == "vote"
    assert [c["name"] for c in data["evaluation"]["pareto_cost"]] == [
        "member:small",
        "vote",
        "consortium",
    ]
    assert data["for_prompt"]["members"] == ["py-expert", "chef"]
    assert data["for_prompt"]["support"] == 5 and data["runs"] == 10
    assert {m["model"] for m in data["models"]} == {"py-expert", "chef"}
    # The table: the same facts in words.
    text = runner.invoke(main, ["recommend", "How do I shuffle a python list?", "--db", str(db)])
    assert text.exit_code == 0, text.output
    assert "For prompts like this: py-expert, chef (5 similar past runs)" in text.output
    # Bad input: a clear error naming the problem.
    evaluation.write_text("{not json")
    bad = runner.invoke(main, ["recommend", "--eval", str(evaluation), "--no-history"])
    assert bad.exit_code != 0 and "not JSON (line 1" in bad.output
    evaluation.write_text(json.dumps([{"name": "a"}]))
    bad = runner.invoke(main, ["recommend", "--eval", str(evaluation), "--no-history"])
    assert bad.exit_code != 0 and "a: missing accuracy" in bad.output


LAZY = """
import sys
from consortium_lab import recommend
from consortium_lab.widget import recommending  # the chat kernel's side
from recommend_data import record_topic_run, PYTHON_PROMPTS, COOKING_PROMPTS
from consortium_lab.sinks.runlog import RunStore
prompts = PYTHON_PROMPTS + COOKING_PROMPTS
def record(some):
    with RunStore(sys.argv[1]) as store:
        for prompt in some:
            record_topic_run(store, prompt, prompt)
record(prompts[:4])
recommend(evaluation=[{"name": "a", "accuracy": 0.5}], path=sys.argv[1])
few = recommend("How do I shuffle a python list?", path=sys.argv[1]).for_prompt
print("sklearn" in sys.modules, few.enough_history)  # too few runs: not loaded
record(prompts[4:])
hint = recommend("How do I shuffle a python list?", path=sys.argv[1]).for_prompt
print("sklearn" in sys.modules, hint.members)
"""


def test_scikit_learn_is_imported_only_for_a_prompt_suggestion(fake_openai, tmp_path):
    env = fake_openai.env()
    env["PYTHONPATH"] = str(__import__("pathlib").Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", LAZY, str(tmp_path / "runs.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["False False", "True ['py-expert', 'chef']"]
