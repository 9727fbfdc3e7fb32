"""Local models (issue 11): sync-only models one call at a time, limits passed down and cut
answers kept, options checked at build, and an arbiter whose output cannot be read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import llm
import pytest

import local_model
from consortium_lab import Consortium, Gateway, runs
from consortium_lab.config.options import OptionError
from consortium_lab.widget.turns import turn_view
from local_model import LocalPlugin

from fake_openai import ModelScript
from helpers import cli, member_reply


@pytest.fixture(autouse=True)
def local_models():
    plugin = LocalPlugin()
    llm.pm.register(plugin, name="test-local-models")
    local_model.CALLS = local_model.Calls()
    try:
        yield
    finally:
        llm.pm.unregister(plugin)


def gateway(**kwargs):
    return Gateway(cache=None, log_to_llm=False, **kwargs)


def local(*models: str, arbiter: str = "local-judge", **settings: Any) -> Consortium:
    """A consortium of ``models`` on a gateway without cache, and no run log unless ``store``
    names one (``gateway`` and ``store`` may be given like the other settings)."""
    if "gateway" not in settings:
        settings["gateway"] = gateway()
    settings.setdefault("store", False)
    return Consortium(models=list(models), arbiter=arbiter, **settings)


def calls():
    return local_model.CALLS


async def events_of(consortium, prompt="Q"):
    return [e async for e in consortium.stream(prompt)]


async def all_threads_done():
    for _ in range(500):
        if calls().finished == calls().started:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{calls().started - calls().finished} model calls never ended")


# -- one call at a time ---------------------------------------------------------------------
async def test_model_n_instances_queue_and_never_overlap():
    c = local("local:3")
    events = await events_of(c)
    assert events[-1].kind == "run_finished" and events[-1].status == "completed"
    assert calls().overlaps == 0 and calls().max_active == 1 and calls().started == 4
    done = [e for e in events if e.kind == "member_done"]
    assert len(done) == 3 and all(e.answer == "Local answer." for e in done)
    queued = [e for e in events if e.kind == "member_queued" and e.queued]
    started = [e for e in events if e.kind == "member_queued" and not e.queued]
    assert len(queued) >= 1 and {(e.model, e.instance) for e in started} == {
        (e.model, e.instance) for e in queued
    }


async def test_cut_off_members_are_kept_truncated_and_the_next_call_waits():
    c = local("local-ramble:2", limits={"max_output_tokens": 100})
    result = await c.run("Q")
    assert result.status == "completed"
    members = result.iterations[0].members
    assert [m.status for m in members] == ["done", "done"]
    for m in members:
        assert m.truncated and m.error_type == "cut_off" and "100 tokens" in m.error
        assert m.text.startswith("word1 word2 ") and len(m.text) > 100 * 4
    assert calls().overlaps == 0 and calls().max_active == 1
    await all_threads_done()


async def test_cut_off_members_do_not_rest_their_model_for_the_arbiter():
    # Three cut-offs in a row used to count as failures and put the model on its cool-down,
    # so the same model as arbiter was refused ("resting for 30 s").
    c = local(
        "local-ramble:3",
        arbiter="local-ramble",
        max_iterations=1,
        arbiter_repair=False,
        limits={"max_output_tokens": 40},
    )
    result = await c.run("Q")
    assert result.status == "completed_with_warnings", result.error
    assert result.synthesis is not None and result.synthesis.raw.startswith("word1 ")
    await all_threads_done()


async def test_time_limit_cut_keeps_the_text_so_far():
    c = local("local-ramble", limits={"total_timeout": 0.3, "max_output_tokens": None})
    result = await c.run("Q")
    (member,) = result.iterations[0].members
    assert member.status == "done" and member.truncated and member.error_type == "cut_off"
    assert "0.3 s" in member.error and member.text.startswith("word1 ")
    assert calls().overlaps == 0
    await all_threads_done()


async def test_first_token_timeouts_queue_behind_the_hung_call():
    c = local("local-hang:2", gateway=gateway(retries=0), limits={"first_token_timeout": 0.2})
    result = await c.run("Q")
    assert result.status == "failed"
    assert [m.error_type for m in result.iterations[0].members] == ["timeout", "timeout"]
    await all_threads_done()
    # The second call entered the model only after the first call's thread had left it.
    assert calls().started == 2 and calls().overlaps == 0 and calls().max_active == 1


async def test_a_cancelled_run_holds_the_model_until_its_thread_stops():
    gw = gateway()
    first = local("local-ramble", gateway=gw)
    run = first.stream("Q")
    async for event in run:
        if event.kind == "member_delta":
            break
    await run.cancel()
    # At once, on the same model object: it must wait for the abandoned thread.
    second = local("local-ramble", gateway=gw, limits={"max_output_tokens": 100})
    result = await second.run("Q")
    assert result.status == "completed" and result.iterations[0].members[0].truncated
    await all_threads_done()
    assert calls().overlaps == 0


async def test_parallel_sync_setting_lets_calls_overlap():
    # The model raises on overlap: with the setting on, model:3 shows that calls did overlap.
    gw = gateway(model_settings={"local-ramble": {"parallel_sync": True}}, retries=0)
    c = local("local-ramble:3", gateway=gw, limits={"max_output_tokens": 200})
    await c.run("Q")
    await all_threads_done()
    assert calls().overlaps >= 1


# -- limits reach the model -----------------------------------------------------------------
async def test_max_output_tokens_becomes_the_model_option_and_truncation_is_kept():
    c = local("local-opts", limits={"max_output_tokens": 7})
    result = await c.run("Q")
    (member,) = result.iterations[0].members
    assert calls().options[0]["max_tokens"] == 7
    assert member.status == "done" and member.truncated and member.error_type == "length"
    assert member.text.split() == [f"w{i}" for i in range(7)]


async def test_a_configured_max_tokens_option_is_not_overridden():
    c = local("local-opts", member_options={"local-opts": {"max_tokens": 3, "style": "terse"}})
    await c.run("Q")
    assert calls().options[0] == {"max_tokens": 3, "style": "terse"}


async def test_openai_models_receive_max_tokens(fake_openai):
    fake_openai.add_model("m", ModelScript(reply=member_reply("A.")))
    c = Consortium(
        models=["m"], arbiter="local-judge", store=False, limits={"max_output_tokens": 123}
    )
    await c.run("Q")
    assert fake_openai.requests_for("m")[0].json["max_tokens"] == 123


# -- options checked when the consortium is built ---------------------------------------------
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"member_options": {"local-opts": {"temprature": 0.5}}},
            ["member_options['local-opts']", "unknown option 'temprature'", "max_tokens, style"],
        ),
        (
            {"member_options": {"local-opts#1": {"max_tokens": "lots"}}},
            ["member_options['local-opts#1']", "option 'max_tokens'", "'lots'"],
        ),
        (
            {"arbiter_options": {"temperature": 0.2}},
            ["arbiter_options", "'local-judge'", "no options at all"],
        ),
    ],
)
def test_bad_options_are_refused_when_the_consortium_is_built(settings, expected):
    with pytest.raises(OptionError) as info:
        Consortium(models=["local-opts"], arbiter="local-judge", store=False, **settings)
    for part in expected:
        assert part in str(info.value)
    assert calls().started == 0


# -- an arbiter whose output cannot be read ------------------------------------------------
async def test_unreadable_arbiter_stops_after_two_and_the_run_warns(tmp_path: Path):
    db = tmp_path / "runs.db"
    c = local("local", arbiter="local-noformat", store=db, max_iterations=4)
    result = await c.run("Q")
    assert result.status == "completed_with_warnings"
    assert len(result.iterations) == 2
    for it in result.iterations:
        assert it.synthesis is not None and not it.synthesis.parse_ok
        assert it.synthesis.repairs == 1
        assert "reformat request did not help" in it.synthesis.warnings
        assert it.synthesis.raw.startswith("I think the answer is probably forty-two")
    assert "forty-two" in result.text
    assert any("stopped iterating" in w and "2 iterations in a row" in w for w in result.warnings)
    assert any("could not be read" in w for w in result.warnings)
    # 2 member calls, 2 arbiter calls, 2 reformat requests.
    assert sum("could not be read" in p for p in calls().prompts) == 2
    ui = turn_view(result)["ui"]  # what the chat widget marks the turn with
    assert ui["status"] == "completed_with_warnings" and ui["warnings"] == result.warnings
    logged = runs.get(result.run_id, path=db)
    assert logged.status == "completed_with_warnings" and logged.warnings == result.warnings
    assert [it.synthesis.repairs for it in logged.iterations] == [1, 1]


async def test_a_repaired_synthesis_is_used_and_counted():
    c = local("local", arbiter="local-fixable")
    result = await c.run("Q")
    assert result.status == "completed" and result.warnings == []
    synthesis = result.synthesis
    assert synthesis.parse_ok and synthesis.repairs == 1
    assert synthesis.synthesis == "Joint local answer." and synthesis.confidence == 0.9
    assert "forty-two" in synthesis.raw and "Joint local answer." in synthesis.raw
    assert any(w.startswith("repaired:") for w in synthesis.warnings)


async def test_a_cut_off_reformat_reply_is_still_read():
    # The arbiter rambles: its first reply and its reformat reply are both cut by the limits;
    # the reformat reply is read as far as it went (it is not a failed request).
    c = local("local", arbiter="local-ramble", max_iterations=1, limits={"max_output_tokens": 40})
    result = await c.run("Q")
    synthesis = result.synthesis
    assert synthesis.repairs == 1 and "reformat request did not help" in synthesis.warnings
    assert not any(w.startswith("reformat request failed") for w in synthesis.warnings)
    await all_threads_done()


async def test_repair_can_be_turned_off():
    c = local("local", arbiter="local-fixable", arbiter_repair=False, max_iterations=1)
    result = await c.run("Q")
    assert result.status == "completed_with_warnings" and result.synthesis.repairs == 0
    assert not any("could not be read" in p for p in calls().prompts)


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_exits_3_when_the_arbiter_cannot_be_read(fake_openai, as_json):
    fake_openai.add_model("m1", ModelScript(reply=member_reply("One.", 0.8)))
    fake_openai.add_model("prose", ModelScript(reply="Honestly, it is one."))
    args = ["run", "What?", "-m", "m1", "--arbiter", "prose", "--max-iterations", "1"]
    proc = cli(fake_openai.env(), *args, *(["--json"] if as_json else []), check=False)
    assert proc.returncode == 3, proc.stderr
    if as_json:
        assert json.loads(proc.stdout)["metadata"]["status"] == "completed_with_warnings"
    else:
        assert "Honestly, it is one." in proc.stdout and "could not be read" in proc.stderr
