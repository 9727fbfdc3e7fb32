"""The llm-consortium drop-in (issue 12): each difference a user of llm-consortium 0.8.0 would
hit, through the loopback server and llm's real OpenAI plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from consortium_lab import Consortium, ConsortiumConfig
from consortium_lab.compat import ConsortiumOrchestrator, create_consortium
from consortium_lab.config.catalog import UnknownModelError
from consortium_lab.config.consortium import UnsupportedStrategyError

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

UPSTREAM_FIELDS = {
    "strategy_params": None,
    "embedding_backend": None,
    "embedding_model": None,
    "embedding_cache_enabled": True,
    "manual_context": False,
    "category": None,
    "expected_agreement": None,
    "status": "success",
}


@pytest.fixture
def trio(fake_openai):
    fake_openai.add_model("a", ModelScript(reply=member_reply("I am A.", 0.8, "Thinking A.")))
    fake_openai.add_model("b", ModelScript(reply=member_reply("I am B.", None, "Thinking B.")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Both.", 0.9)))
    return fake_openai


def requests_to(server, model: str) -> list:
    return [r for r in server.requests if r.model == model]


# 1. The seed's export shape: the full member text in `response`, the parts beside it.
async def test_export_keeps_the_full_response_and_adds_answer_and_thought_process(trio):
    result = await Consortium(models=["a"], arbiter="judge", store=False).run("Q?")
    row = result.to_dict()["model_responses"][0]
    assert row["response"] == member_reply("I am A.", 0.8, "Thinking A.")
    assert row["answer"] == "I am A."
    assert row["thought_process"] == "Thinking A."


# 2. Ids: every answer has an id and a response_id, and a ranking resolves to one.
def test_rankings_refer_to_member_ids(trio):
    trio.add_model("judge", ModelScript(reply=arbiter_reply("B wins.", 0.9, ranking=(2, 1))))
    out = create_consortium(
        models=["a", "b"], arbiter="judge", judging_method="rank", store=False
    ).orchestrate("Q?")
    members = out["iterations"][0]["model_responses"]
    assert [(m["model"], m["id"]) for m in members] == [("a", 1), ("b", 2)]
    assert len({m["response_id"] for m in members}) == 2 and all(m["response_id"] for m in members)
    synthesis = out["synthesis"]
    assert synthesis["ranking"] == [2, 1]
    assert synthesis["chosen_response_id"] == members[1]["response_id"]
    assert synthesis["synthesis"] == "I am B."


# 3. Upstream's run tables, read back by upstream's own commands.
def llm_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    llm_bin = os.path.join(os.path.dirname(sys.executable), "llm")
    return subprocess.run(
        [llm_bin, "consortium", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_runs_appear_in_upstreams_runs_and_run_info(trio):
    out = create_consortium(
        models=["a", "b"], arbiter="judge", config_name="duo", store=False
    ).orchestrate("Is the earth round?")
    run_id = out["metadata"]["consortium_id"]
    listed = llm_cli(trio.env(), "runs")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "Is the earth round?" in listed.stdout
    info = llm_cli(trio.env(), "run-info", run_id, "--json-output")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["run"]["iteration_count"] == 1 and data["run"]["final_confidence"] == 0.9
    assert data["run"]["config_name"] == "duo" and data["run"]["status"] == "success"
    roles = sorted((m["role"], m["model"]) for m in data["members"])
    assert roles == [("arbiter", "judge"), ("member", "a"), ("member", "b")]
    texts = {m["model"]: m["response"] for m in data["members"]}
    assert texts["a"] == member_reply("I am A.", 0.8, "Thinking A.")
    [decision] = data["decisions"]
    assert decision["confidence"] == 0.9 and decision["synthesis"] == "Both."
    assert decision["full_response"] == arbiter_reply("Both.", 0.9)


def test_upstream_tables_follow_llms_logs_off_switch(trio):
    (trio.home.llm_user_path / "logs-off").write_text("")
    out = create_consortium(models=["a"], arbiter="judge", store=False).orchestrate("Q?")
    assert out["synthesis"]["synthesis"] == "Both."
    listed = llm_cli(trio.env(), "runs")
    assert out["metadata"]["consortium_id"] not in listed.stdout


# 4. Upstream's eight other config fields, with its defaults, both ways.
def test_upstream_config_fields_round_trip():
    from llm_consortium import ConsortiumConfig as Upstream

    ours = ConsortiumConfig(models={"a": 1}, arbiter="judge")
    assert {k: getattr(ours, k) for k in UPSTREAM_FIELDS} == UPSTREAM_FIELDS
    theirs = Upstream(
        models={"a": 1},
        arbiter="judge",
        embedding_backend="OpenAI",
        embedding_model="text-embedding-3-small",
        category="geo",
        expected_agreement=0.7,
        strategy_params={"k": 2},
    )
    back = ConsortiumConfig.from_dict(theirs.to_dict())
    assert {k: getattr(back, k) for k in UPSTREAM_FIELDS} == {
        k: getattr(theirs, k) for k in UPSTREAM_FIELDS
    }
    again = Upstream.from_dict(back.to_dict())
    assert again.to_dict() == theirs.to_dict()


# 5 and 6. Synthesis keys, and upstream's types in the compat result only.
def test_compat_result_has_upstreams_synthesis_keys_and_float_confidences(trio):
    orchestrator = create_consortium(models=["a", "b"], arbiter="judge", store=False)
    out = orchestrator.orchestrate("Q?")
    synthesis = out["synthesis"]
    assert synthesis["raw_arbiter_response"] == arbiter_reply("Both.", 0.9)
    assert synthesis["geometric_confidence"] is None and synthesis["centroid_vector"] is None
    confidences = {m["model"]: m["confidence"] for m in out["model_responses"]}
    assert confidences == {"a": 0.8, "b": 0.5}
    assert all(isinstance(c, float) and c >= 0 for c in confidences.values())
    ours = orchestrator.last_result
    assert ours is not None
    assert {m.model: m.confidence for m in ours.final_answers} == {"a": 0.8, "b": None}


# 7. No cache in compat unless asked.
def test_compat_asks_the_models_again_unless_told_to_cache(trio):
    orchestrator = create_consortium(models=["a"], arbiter="judge", store=False)
    orchestrator.orchestrate("Same?")
    orchestrator.orchestrate("Same?")
    assert len(requests_to(trio, "a")) == 2 and len(requests_to(trio, "judge")) == 2
    orchestrator.orchestrate("Same?", cache="use")
    orchestrator.orchestrate("Same?", cache="use")
    assert len(requests_to(trio, "a")) == 3  # stored by the first cached call, then reused
    with pytest.raises(ValueError, match="cache: expected"):
        orchestrator.orchestrate("Same?", cache="sometimes")


# 8. Instances of model:n are distinct samples: a seed per instance where the model takes one.
async def test_instances_send_distinct_requests(trio):
    await Consortium(models=["a:3"], arbiter="judge", store=False).run("Sample?")
    seeds = sorted(r.json.get("seed") or 0 for r in requests_to(trio, "a"))
    assert seeds == [0, 2, 3]  # instance 1 unchanged; 2 and 3 get their own seed
    bodies = {json.dumps(r.json, sort_keys=True) for r in requests_to(trio, "a")}
    assert len(bodies) == 3


async def test_a_seed_given_in_the_options_is_kept(trio):
    config = {"models": {"a": 2}, "arbiter": "judge", "member_options": {"a": {"seed": 7}}}
    await Consortium(config, store=False).run("Sample?")
    assert [r.json.get("seed") for r in requests_to(trio, "a")] == [7, 7]


# 9. arbiter=None: no arbiter call, the first answer with confidence 1.0, one iteration.
def test_no_arbiter_matches_upstream(trio):
    out = create_consortium(
        models=["a", "b"], arbiter=None, max_iterations=3, store=False
    ).orchestrate("Q?")
    assert requests_to(trio, "judge") == []
    assert out["metadata"]["total_iterations"] == 1
    assert out["synthesis"]["synthesis"] == member_reply("I am A.", 0.8, "Thinking A.")
    assert out["synthesis"]["confidence"] == 1.0
    assert out["synthesis"]["ranking"] == [1, 2]
    assert out["metadata"]["config"]["arbiter"] is None


# 10. Strategies: run, or refused at build naming the strategy and the supported ones.
@pytest.mark.parametrize("strategy", ["voting", "role", "semantic", "elimination", "nonsense"])
def test_unsupported_strategies_are_refused_at_build(strategy):
    with pytest.raises(UnsupportedStrategyError, match=f"'{strategy}'.*supported: 'default'"):
        create_consortium(models=["a"], arbiter="judge", strategy=strategy)
    with pytest.raises(UnsupportedStrategyError, match=f"'{strategy}'"):
        Consortium(models=["a"], arbiter="judge", strategy=strategy, check_models=False)


def test_elimination_forces_rank_judging_as_upstream():
    config = ConsortiumConfig(models={"a": 1}, strategy="elimination")
    assert config.judging_method == "rank"
    assert ConsortiumConfig(models={"a": 1}, strategy="default").judging_method == "default"


# 11. ConsortiumOrchestrator(config), from upstream's config or ours.
def test_consortium_orchestrator_takes_upstreams_config(trio):
    from llm_consortium import ConsortiumConfig as Upstream

    config = Upstream(models={"a": 1, "b": 1}, arbiter="judge", max_iterations=2)
    orchestrator = ConsortiumOrchestrator(config, config_name="pair", store=False)
    assert orchestrator.models == {"a": 1, "b": 1} and orchestrator.arbiter == "judge"
    assert orchestrator.max_iterations == 2 and orchestrator.manual_context is False
    out = orchestrator.orchestrate("Q?", consortium_id="run-1")
    assert out["metadata"]["consortium_id"] == "run-1" == orchestrator.consortium_id
    assert orchestrator.iteration_history == out["iterations"]
    with pytest.raises(TypeError, match="config: expected"):
        ConsortiumOrchestrator(["a"])


# 12. Models are checked when first called, not when built.
def test_models_are_checked_at_first_use(trio):
    orchestrator = create_consortium(models=["no-such-model"], arbiter="judge")
    with pytest.raises(UnknownModelError, match=r"models: unknown .* 'no-such-model'"):
        orchestrator.orchestrate("Q?")


def test_a_chat_kernel_never_imports_llm_consortium_through_compat(fake_openai):
    child = (
        "import sys\nfrom consortium_lab.apps import voila\nvoila.warm_up()\n"
        "import consortium_lab.compat\nprint('llm_consortium' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        env=fake_openai.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
