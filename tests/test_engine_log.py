"""The engine with its sinks: the per-user run log, llm's own log, multi-turn from the log,
sync-only models, and the llm-consortium drop-in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import llm
import pytest

from consortium_lab import Consortium, Conversation, runs
from consortium_lab.compat import create_consortium
from consortium_lab.paths import runs_db_path
from consortium_lab.sinks.runlog import RunStore

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply


async def test_run_is_logged_and_reads_back_identically(trio):
    result = await Consortium(models=["a", "b"], arbiter="judge").run("Q?")
    assert runs_db_path().exists()
    listed = runs.list()
    assert listed[0]["id"] == result.run_id and listed[0]["status"] == "completed"
    stored = runs.get(result.run_id)
    assert stored.to_dict() == result.to_dict()
    assert json.loads(runs.export(result.run_id))["synthesis"]["synthesis"] == "Both."
    frame = runs.to_pandas()
    assert set(frame["model"]) == {"a", "b"}


# A run is logged one way: Run records each event before its consumer sees it (what
# RunStore.consume used to do beside it).


async def test_the_run_records_every_event_it_yields(trio, tmp_path):
    with RunStore(tmp_path / "runs.db") as store:
        run = Consortium(models=["a", "b"], arbiter="judge", store=store).stream("Q?")
        seen = [event async for event in run]
        assert seen[0].kind == "run_started" and seen[-1].kind == "run_finished"
        kept = [e for e in seen if e.kind not in ("member_delta", "arbiter_delta")]
        assert store.get_events(run.run_id) == kept
        assert store.get_run_row(run.run_id)["status"] == "completed"
        assert store.member_records(run.run_id) == [
            m for it in run.result.iterations for m in it.members
        ]


async def test_a_run_the_engine_breaks_is_logged_as_failed(trio, tmp_path, monkeypatch):
    from consortium_lab.engine.iteration import RunLoop

    async def broken(*args, **kwargs):
        raise RuntimeError("engine broke")
        yield  # an async generator, as the real one

    monkeypatch.setattr(RunLoop, "_judge", broken)
    with RunStore(tmp_path / "runs.db") as store:
        run = Consortium(models=["a"], arbiter="judge", store=store).stream("Q?")
        with pytest.raises(RuntimeError, match="engine broke"):
            async for _ in run:
                pass
        row = store.get_run_row(run.run_id)
        assert row["status"] == "failed" and "engine broke" in row["error"]
        assert len(store.member_responses(run.run_id)) == 1  # what completed is kept
        assert run.result.status == "failed"


async def test_a_run_goes_on_when_its_log_refuses_an_event(trio, tmp_path, caplog):
    from consortium_lab.engine.events import RunStarted

    with RunStore(tmp_path / "runs.db") as store:
        run = Consortium(models=["a", "b"], arbiter="judge", store=store).stream("Q?")
        store.record(RunStarted(run_id=run.run_id, prompt="taken", config={}))
        async for _ in run:
            pass
        assert run.result.status == "completed"
        assert "could not record run_started" in caplog.text
        assert store.get_run_row(run.run_id)["status"] == "completed"


async def test_member_and_arbiter_responses_reach_llm_logs(trio):
    result = await Consortium(models=["a", "b"], arbiter="judge").run("Logged?")
    ids = [m.model for m in result.iterations[0].members]
    assert sorted(ids) == ["a", "b"]
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "llm"), "logs", "-n", "10", "--json"],
        env=trio.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    logged = json.loads(out.stdout)
    models = {row["model"] for row in logged}
    assert {"a", "b", "judge"} <= models
    assert any("I am A." in row["response"] for row in logged)


async def test_cancelled_run_is_logged_as_cancelled(fake_openai):
    fake_openai.add_model("slow", ModelScript(reply="w " * 400, token_delay=0.02))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F")))
    run = Consortium(models=["slow"], arbiter="judge").stream("Q")
    async for event in run:
        if event.kind == "member_delta":
            await run.cancel()
    assert runs.get(run.run_id).status == "cancelled"


async def test_conversation_rebuilt_from_log_continues_each_members_history(trio):
    consortium = Consortium(models=["a", "b"], arbiter="judge")
    chat = consortium.conversation()
    await chat.ask("first question")
    # a new process (a reloaded page) rebuilds the conversation from the log
    rebuilt = Conversation.from_log(chat.id)
    assert rebuilt.turn_count == 1
    assert rebuilt.consortium.config.models == {"a": 1, "b": 1}
    await rebuilt.ask("follow-up")
    for me, other in (("a", "I am B."), ("b", "I am A.")):
        messages = trio.requests_for(me)[-1].json["messages"]
        text = " ".join(str(m["content"]) for m in messages)
        assert "first question" in text and f"I am {me.upper()}." in text and other not in text
    assert runs.get(runs.list()[0]["id"]).turn == 2


async def test_sync_only_model_streams_from_a_worker_thread(fake_openai, monkeypatch):
    """A model with no async implementation: llm's real sync OpenAI client, in a thread."""
    from llm.default_plugins.openai_models import Chat

    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("F", 0.9)))
    # Slow enough that the answer is still streaming when its first piece is seen (pieces
    # that wait together reach the consumer as one delta, so counting them says nothing).
    reply = member_reply("from a thread " + "word " * 40)
    fake_openai.server.add_model(
        "synconly", ModelScript(reply=reply, chunk_words=1, token_delay=0.03)
    )

    class SyncOnly:
        @llm.hookimpl
        def register_models(self, register):
            model = Chat("synconly", model_name="synconly", api_base=fake_openai.api_base)
            model.needs_key = None  # as llm does for extra-openai-models entries
            register(model)

    plugin = SyncOnly()
    llm.pm.register(plugin, name="test-sync-only")
    try:
        with pytest.raises(llm.UnknownModelError):
            llm.get_async_model("synconly")
        events = []
        completed_at_first_delta = None
        run = Consortium(models=["synconly"], arbiter="judge", store=False).stream("Q")
        async for e in run:
            if e.kind == "member_delta" and completed_at_first_delta is None:
                completed_at_first_delta = "synconly" in fake_openai.completed
            events.append(e)
    finally:
        llm.pm.unregister(plugin)
    deltas = [e for e in events if e.kind == "member_delta" and e.model == "synconly"]
    done = next(e for e in events if e.kind == "member_done")
    assert completed_at_first_delta is False  # streamed, not handed over at the end
    assert "".join(d.text for d in deltas) == done.text == reply
    assert done.answer == ("from a thread " + "word " * 40).strip()


def test_compat_create_consortium_returns_upstream_shape(trio):
    orchestrator = create_consortium(models=["a", "b:2"], arbiter="judge", max_iterations=2)
    result = orchestrator.orchestrate("Compat?")
    assert result["original_prompt"] == "Compat?"
    assert result["synthesis"]["synthesis"] == "Both." and result["synthesis"]["confidence"] == 0.9
    assert result["metadata"]["total_iterations"] == 1
    assert result["metadata"]["config"]["models"] == {"a": 1, "b": 2}
    responses = result["iterations"][0]["model_responses"]
    assert sorted((r["model"], r["instance"]) for r in responses) == [("a", 0), ("b", 0), ("b", 1)]
    assert len(result["model_responses"]) == 3  # the seed export keys are there too


async def test_compat_orchestrate_works_inside_a_running_loop(trio):
    result = create_consortium(models=["a"], arbiter="judge").orchestrate("In a loop?")
    assert result["synthesis"]["synthesis"] == "Both."


def test_saved_config_runs_as_llm_model_through_upstream(trio):
    from consortium_lab import ConsortiumConfig, configs

    configs.save("duo", ConsortiumConfig(models={"a": 1, "b": 1}, arbiter="judge"))
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "llm"), "-m", "duo", "Hello?"],
        env=trio.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Both." in out.stdout


def test_sigkilled_run_is_interrupted_and_keeps_completed_members(trio, tmp_path):
    trio.add_model("slow", ModelScript(reply="w " * 2000, token_delay=0.01))
    db = tmp_path / "runs.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from consortium_lab import Consortium
        async def main():
            c = Consortium(models=["a", "slow"], arbiter="judge", store={str(db)!r})
            async for event in c.stream("Q"):
                if event.kind == "member_done":
                    print("DONE", flush=True)
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=trio.env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "DONE"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    store = RunStore(db)  # opening the store recovers runs whose owner is gone
    row = store.list_runs()[0]
    assert row["status"] == "interrupted"
    result = runs.get(row["id"], path=db)
    assert result.status == "interrupted"
    assert [m.model for m in result.iterations[0].members] == ["a"]
