"""ChatWidget: traits, front-end messages, coalesced deltas, reload from the run log.

Front-end messages are simulated by calling ``widget.handle_message`` (what the comm handler
calls); messages to the front end are captured by patching ``widget.send``. Models are on the
loopback OpenAI-compatible server. The front end's own logic is tested with vitest
(``widgets/test``), run here by ``test_frontend_vitest``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("anywidget")

from consortium_lab import configs, runs
from consortium_lab.engine.events import (
    IterationStarted,
    MemberDelta,
    MemberDone,
    RunStarted,
)
from consortium_lab.sinks.runlog import RunStore
from consortium_lab.widget.batching import MAX_MESSAGES_PER_SECOND, DeltaBatcher
from consortium_lab.widget.chat import ChatWidget
from consortium_lab.widget.messages import KERNEL_MESSAGE
from consortium_lab.widget.vega import VegaChart, VegaChartGrid
from test_widget_messages import schema_validator

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

ROOT = Path(__file__).resolve().parents[1]


class Capture:
    """Stands in for ``widget.send``: records (time, content), and checks every message against
    the one message schema (the pydantic models and the committed JSON schema)."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict]] = []
        self.schema = schema_validator("KernelMessage")

    def __call__(self, content, buffers=None) -> None:
        content = json.loads(json.dumps(content))
        KERNEL_MESSAGE.validate_python(content)
        self.schema.validate(content)
        self.messages.append((time.monotonic(), content))

    def of(self, kind: str) -> list[dict]:
        return [m for _, m in self.messages if m.get("type") == kind]

    def events(self) -> list[dict]:
        return [e for m in self.of("events") for e in m["events"]]

    async def answer(self, kind: str, req: str, timeout: float = 120.0) -> dict:
        """The last ``kind`` message answering ``req``, waited for on the loop (the widget
        answers from a worker thread, posting to the loop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout  # generous: this machine is heavily loaded
        while loop.time() < deadline:
            found = [m for m in self.of(kind) if m.get("req") == req]
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} answered {req!r}: {self.of(kind)}")


def make_widget(monkeypatch, tmp_path, **kwargs) -> tuple[ChatWidget, Capture]:
    kwargs.setdefault("store", tmp_path / "runs.db")
    widget = ChatWidget(**kwargs)
    capture = Capture()
    monkeypatch.setattr(widget, "send", capture)
    return widget, capture


@pytest.fixture
def trio(fake_openai):
    fake_openai.add_model(
        "a", ModelScript(reply=member_reply("The sky is blue because of Rayleigh scattering.", 0.8))
    )
    fake_openai.add_model("b", ModelScript(reply=member_reply("The sky is blue, said Beta.", 0.7)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Yes.", 0.9, areas=("why",))))
    return {"models": {"a": 1, "b": 1}, "arbiter": "judge"}


async def test_ask_fills_traits_and_results(trio, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=trio)
    assert widget.config["models"] == {"a": 1, "b": 1}
    ids = {m["id"] for m in widget.models}
    assert {"a", "b", "judge"} <= ids
    demo = next(m for m in widget.models if m["id"] == "demo-analyst")
    assert demo["demo"] and "offline demo" in demo["label"]
    assert set(widget.chart_specs) >= {"confidence", "member_confidence", "consensus"}

    result = await widget.ask("Is it?")
    assert result.text == "Yes."
    assert widget.results == [result]
    assert widget.conversation.turn_count == 1
    assert widget.status == "idle" and widget.live_turn == {}
    [turn] = widget.turns
    assert turn["synthesis"]["synthesis"] == "Yes."
    assert turn["metadata"]["run_id"] == result.run_id
    assert [m["key"] for m in turn["ui"]["members"]] == ["a#1", "b#1"]
    assert turn["ui"]["charts"]["confidence"] == [{"iteration": 1, "confidence": 0.9}]
    highlights = turn["ui"]["highlights"]["1"]["members"]
    assert {s["kind"] for s in highlights["a#1"]} == {"shared", "unique"}
    assert widget.past_runs[0]["id"] == result.run_id

    kinds = [e["kind"] for e in capture.events()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("member_done") == 2 and "synthesis" in kinds
    # a follow-up keeps each member's own history
    await widget.ask("And then?")
    assert widget.conversation.turn_count == 2 and len(widget.turns) == 2


async def test_deltas_are_coalesced_and_add_up(fake_openai, monkeypatch, tmp_path):
    """4 members x 2000 tokens with a tiny token delay: at most ~20 messages a second, and
    the text the front end receives is exactly each model's text."""
    texts = {}
    for i in range(1, 5):
        text = " ".join(f"m{i}w{n}" for n in range(2000))
        texts[f"m{i}"] = text
        fake_openai.add_model(f"m{i}", ModelScript(reply=text, token_delay=0.0005))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Done.", 0.95)))
    config = {"models": dict.fromkeys(texts, 1), "arbiter": "judge"}
    widget, capture = make_widget(monkeypatch, tmp_path, config=config)
    started = time.monotonic()
    await widget.ask("Stream a lot.")
    elapsed = time.monotonic() - started
    batches = capture.of("events")
    times = [at for at, m in capture.messages if m.get("type") == "events"]
    deltas = sum(1 for e in capture.events() if e["kind"] == "member_delta")
    assert deltas < 8000 / 4, "deltas were not merged"
    span = max(times[-1] - times[0], 1e-9)
    rate = (len(batches) - 1) / span
    assert rate <= MAX_MESSAGES_PER_SECOND + 2, (len(batches), span)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / MAX_MESSAGES_PER_SECOND - 0.01
    assert elapsed > 0.5  # it really streamed
    for model, text in texts.items():
        streamed = "".join(
            e["text"]
            for e in capture.events()
            if e["kind"] == "member_delta" and e["model"] == model
        )
        assert streamed == text
        done = next(
            e for e in capture.events() if e["kind"] == "member_done" and e["model"] == model
        )
        assert done["text"] == text
    arbiter = "".join(e["text"] for e in capture.events() if e["kind"] == "arbiter_delta")
    assert arbiter == widget.results[0].synthesis.raw


def test_batcher_merges_per_stream_and_keeps_order():
    sent: list[list[dict]] = []
    batcher = DeltaBatcher(sent.append)
    key = {"model": "a", "instance": 1, "iteration": 1, "stage": "answer", "channel": "text"}

    async def go():
        batcher.add({"kind": "member_delta", **key, "text": "Hel"})
        batcher.add({"kind": "member_delta", **key, "model": "b", "text": "X"})
        batcher.add({"kind": "member_delta", **key, "text": "lo"})
        batcher.add({"kind": "member_done", **key, "text": "Hello"})
        batcher.add({"kind": "member_delta", **key, "iteration": 2, "text": "!"})
        await batcher.drain()

    asyncio.run(go())
    [batch] = sent
    assert [(e["kind"], e["model"], e.get("text")) for e in batch] == [
        ("member_delta", "a", "Hello"),
        ("member_delta", "b", "X"),
        ("member_done", "a", "Hello"),
        ("member_delta", "a", "!"),
    ]


async def test_front_end_messages(trio, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=trio)
    # set_config: validated; an unknown model is an error naming the field
    widget.handle_message(
        {"type": "set_config", "config": {**trio, "models": {"nosuch": 1}}, "req": 1}
    )
    assert capture.of("notice")[-1]["level"] == "error"
    assert "nosuch" in capture.of("notice")[-1]["message"] and "nosuch" in widget.error
    assert widget.config["models"] == {"a": 1, "b": 1}
    widget.handle_message(
        {"type": "set_config", "config": {**trio, "models": {"a": 2}, "confidence_threshold": 0.5}}
    )
    assert widget.config["models"] == {"a": 2} and widget.config["confidence_threshold"] == 0.5
    assert widget.error == ""
    # saved configs: save, clone, load, remove
    widget.handle_message({"type": "save_config", "name": "duo"})
    assert [s["name"] for s in widget.saved_configs] == ["duo"]
    assert configs.get("duo").models == {"a": 2}
    widget.handle_message({"type": "clone_config", "source": "duo", "target": "duo2"})
    assert [s["name"] for s in widget.saved_configs] == ["duo", "duo2"]
    widget.handle_message({"type": "set_config", "config": trio})
    widget.handle_message({"type": "load_config", "name": "duo2"})
    assert widget.config["models"] == {"a": 2}
    widget.handle_message({"type": "remove_config", "name": "duo2"})
    assert [s["name"] for s in widget.saved_configs] == ["duo"]
    widget.handle_message({"type": "set_config", "config": trio})

    # ask: the comm handler returns at once; the run goes on as a task
    widget.handle_message({"type": "ask", "prompt": "First?"})
    assert widget.status == "running"
    await widget.wait()
    assert widget.status == "idle" and len(widget.turns) == 1
    run_id = widget.turns[0]["ui"]["run_id"]
    # asking while a run is going on is refused with a notice
    widget.handle_message({"type": "ask", "prompt": "One"})
    widget.handle_message({"type": "ask", "prompt": "Two"})
    assert "in progress" in capture.of("notice")[-1]["message"]
    await widget.wait()

    # export: sent back as a download equal to the run log's export
    widget.handle_message({"type": "export", "id": run_id, "format": "json"})
    download = capture.of("download")[-1]
    assert download["filename"].endswith(".json") and download["mime"] == "application/json"
    assert json.loads(download["content"]) == json.loads(
        runs.export(run_id, path=tmp_path / "runs.db")
    )
    widget.handle_message({"type": "export", "id": run_id, "format": "markdown"})
    assert capture.of("download")[-1]["content"].startswith("# First?")

    # new chat, then open the old run's conversation again
    widget.handle_message({"type": "new_chat"})
    assert widget.turns == [] and widget.conversation.turn_count == 0
    widget.handle_message({"type": "open_run", "id": run_id})
    assert widget.turns[0]["ui"]["run_id"] == run_id
    assert widget.conversation.turn_count == 2

    # delete
    widget.handle_message({"type": "delete_run", "id": run_id})
    assert run_id not in [t["ui"]["run_id"] for t in widget.turns]
    assert run_id not in [r["id"] for r in widget.past_runs]
    widget.handle_message({"type": "nonsense"})
    assert "unknown message" in capture.of("notice")[-1]["message"]


async def test_word_cloud_rows_in_the_turn_ui(fake_openai, monkeypatch, tmp_path):
    """Each member's word-cloud rows (rows.word_rows of its last answer: stop words
    removed, sized by frequency) ship in the turn's ui; the spec is in chart_specs."""
    from consortium_lab.analysis import charts
    from consortium_lab.analysis import rows as chart_rows

    answer_a = "The sky is blue. Blue light scatters: Rayleigh scattering of blue light."
    fake_openai.add_model("wa", ModelScript(reply=member_reply(answer_a, 0.8)))
    fake_openai.add_model("wb", ModelScript(reply=member_reply("The sky is blue, said Beta.")))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Yes.", 0.9)))
    config = {"models": {"wa": 1, "wb": 1}, "arbiter": "judge", "max_iterations": 1}
    widget, _ = make_widget(monkeypatch, tmp_path, config=config)
    assert widget.chart_specs["words"] == charts.spec(charts.word_cloud())
    result = await widget.ask("Why is the sky blue?")
    [turn] = widget.turns
    rows = turn["ui"]["charts"]["words"]
    texts = {f"{m.model}#{m.instance}": m.answer for m in result.final_answers}
    assert rows == chart_rows.word_rows(texts, top=40)
    assert next(r["member"] for r in rows) == "wa#1"  # config order
    a_words = {r["word"]: r for r in rows if r["member"] == "wa#1"}
    b_words = {r["word"]: r for r in rows if r["member"] == "wb#1"}
    assert {"sky", "blue", "rayleigh", "scattering", "light"} <= set(a_words)
    assert {"sky", "blue", "beta"} <= set(b_words)
    assert not ({"the", "is", "of"} & (set(a_words) | set(b_words)))  # stop words removed
    assert {r["member"] for r in rows} == {"wa#1", "wb#1"}
    # size by frequency: "blue" (3 times) > "light" (2) > "sky" (1)
    assert a_words["blue"]["count"] == 3
    assert a_words["blue"]["size"] > a_words["light"]["size"] > a_words["sky"]["size"]
    # the live turn: no clouds while members are missing, rows once every member answered
    widget.handle_message({"type": "ask", "prompt": "Again?"})
    seen: list[tuple[int, int]] = []

    def watch(change):
        live = change["new"]
        if live:
            members = live["iterations"][-1]["members"] if live["iterations"] else []
            seen.append((len(members), len(live["ui"]["charts"]["words"])))

    widget.observe(watch, names="live_turn")
    await widget.wait()
    assert any(n == 2 and words > 0 for n, words in seen), seen
    assert all(words == 0 for n, words in seen if n < 2), seen
    assert widget.turns[-1]["ui"]["charts"]["words"]


async def test_estimate_message_round_trip(trio, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=trio)
    widget.handle_message({"type": "estimate", "prompt": "Why is the sky blue?", "req": 7})
    [reply] = capture.of("estimate")
    expected = widget.consortium.estimate("Why is the sky blue?")
    assert reply["req"] == 7 and reply["summary"] == expected.summary
    assert reply["summary"].startswith("about 9 calls")  # (2 members + arbiter) x 3 iterations
    assert reply["calls"] == 9 and reply["currency"] == expected.currency
    assert reply["unpriced_models"] == ["a", "b", "judge"] and reply["max_cost"] is None
    assert "cost unknown for: a, b, judge" in reply["summary"]
    # the config changes the estimate; the demo models are free
    widget.handle_message({"type": "set_config", "config": {"max_iterations": 1}, "merge": True})
    widget.handle_message({"type": "estimate", "prompt": "x"})
    assert capture.of("estimate")[-1]["calls"] == 3
    demo, demo_capture = make_widget(monkeypatch, tmp_path / "demo", restore=False)
    demo.handle_message({"type": "estimate", "prompt": "Hello"})
    reply = demo_capture.of("estimate")[-1]
    assert reply["max_cost"] == 0 and "$0.00 at most" in reply["summary"]
    assert demo.estimate("Hello").summary == reply["summary"]

    # a failure answers an empty summary (the page shows nothing), never an error notice
    def broken(prompt):
        raise RuntimeError("no price table")

    monkeypatch.setattr(widget.consortium, "estimate", broken)
    before = len(capture.of("notice"))
    widget.handle_message({"type": "estimate", "prompt": "x", "req": 8})
    reply = capture.of("estimate")[-1]
    assert reply == {"type": "estimate", "req": 8, "summary": "", "error": "no price table"}
    assert len(capture.of("notice")) == before and widget.error == ""


async def test_per_member_options_and_system_prompts(trio, fake_openai, monkeypatch, tmp_path):
    trio = {**trio, "models": {"a": 2, "b": 1}}
    widget, capture = make_widget(monkeypatch, tmp_path, config=trio)

    def set_config(config, req):
        widget.handle_message({"type": "set_config", "config": config, "merge": True, "req": req})

    set_config({"member_options": {"a": {"temperature": 0.2}}}, 1)
    set_config({"member_options": {"a#2": {"temperature": 0.9, "max_tokens": 50}}}, 2)
    set_config({"member_system_prompts": {"b": "Answer like a poet."}}, 3)
    set_config({"arbiter_options": {"temperature": 0}}, 4)
    assert capture.of("notice") == []
    # merged per member: the second edit kept the first
    assert widget.config["member_options"] == {
        "a": {"temperature": 0.2},
        "a#2": {"temperature": 0.9, "max_tokens": 50},
    }
    cfg = widget.consortium.config
    assert cfg.options_for("a", 1) == {"temperature": 0.2}
    assert cfg.options_for("a", 2) == {"temperature": 0.9, "max_tokens": 50}
    assert cfg.system_prompt_for("b", 1) == "Answer like a poet."
    assert cfg.arbiter_options == {"temperature": 0}
    assert widget.conversation.consortium is widget.consortium

    # the options and the system prompt reach the model calls
    await widget.ask("Why?")
    a_calls = [r.json for r in fake_openai.requests_for("a")]
    assert sorted(c["temperature"] for c in a_calls) == [0.2, 0.9]
    assert [c.get("max_tokens") for c in a_calls if c["temperature"] == 0.9] == [50]
    [b_call] = fake_openai.requests_for("b")
    assert "Answer like a poet." in b_call.prompt_text and "temperature" not in b_call.json
    [judge_call] = fake_openai.requests_for("judge")
    assert judge_call.json["temperature"] == 0
    assert "Answer like a poet." not in fake_openai.requests_for("a")[0].prompt_text

    # bad input is refused with a notice naming the problem; the config is unchanged
    before = widget.config
    bad = [
        ({"member_options": {"a#1": [1, 2]}}, "a#1", "JSON object"),
        ({"member_options": {"a#1": "hot"}}, "a#1", "JSON object"),
        ({"member_options": {"a#1": {"temperature": "hot"}}}, "a#1", "temperature"),
        ({"member_options": {"b": {"temprature": 0.2}}}, "b", "temprature"),
        ({"member_options": {"zed": {"temperature": 0.2}}}, "zed", "not a member"),
        ({"member_options": {"a#3": {"temperature": 0.2}}}, "a#3", "not a member"),
        ({"member_system_prompts": {"b": 5}}, "b", "must be text"),
        ({"member_options": ["a"]}, "member_options", "keyed by member"),
        ({"arbiter_options": {"temperature": "hot"}}, "judge", "temperature"),
    ]
    for i, (config, who, problem) in enumerate(bad, start=10):
        set_config(config, i)
        notice = capture.of("notice")[-1]
        assert notice["level"] == "error" and notice["req"] == i, config
        assert who in notice["message"] and problem in notice["message"], notice
        assert widget.config == before, config
        assert widget.error == ""  # shown at its field on the page, not as the chat's error
    # null (or {} / "") removes a member's entry
    set_config({"member_options": {"a#2": None}, "member_system_prompts": {"b": ""}}, 30)
    assert widget.config["member_options"] == {"a": {"temperature": 0.2}}
    assert widget.config["member_system_prompts"] == {} and widget.error == ""


def ask_a_slow_model(
    fake_openai, monkeypatch, tmp_path, reply: str, token_delay: float
) -> tuple[ChatWidget, Capture]:
    """A widget asked "Go" of the one member ``slow`` (streaming ``reply``), judged by ``judge``."""
    fake_openai.add_model("slow", ModelScript(reply=reply, token_delay=token_delay))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("X", 0.9)))
    widget, capture = make_widget(
        monkeypatch, tmp_path, config={"models": {"slow": 1}, "arbiter": "judge"}
    )
    widget.handle_message({"type": "ask", "prompt": "Go"})
    return widget, capture


async def test_cancel_stops_the_run(fake_openai, monkeypatch, tmp_path):
    widget, capture = ask_a_slow_model(fake_openai, monkeypatch, tmp_path, "word " * 400, 0.02)
    await fake_openai.async_wait_for(
        lambda: any(e["kind"] == "member_delta" for e in capture.events()), timeout=10
    )
    widget.handle_message({"type": "cancel"})
    await widget.wait()
    assert widget.results[-1].status == "cancelled"
    assert widget.turns[-1]["ui"]["status"] == "cancelled"
    assert capture.events()[-1] == {**capture.events()[-1], "kind": "run_finished"}
    assert capture.events()[-1]["status"] == "cancelled"
    assert runs.list(path=tmp_path / "runs.db")[0]["status"] == "cancelled"


async def test_ready_sends_snapshot_of_live_streams(fake_openai, monkeypatch, tmp_path):
    widget, capture = ask_a_slow_model(fake_openai, monkeypatch, tmp_path, "tok " * 300, 0.01)
    await fake_openai.async_wait_for(
        lambda: sum(e["kind"] == "member_delta" for e in capture.events()) >= 2, timeout=10
    )
    widget.handle_message({"type": "ready"})
    [snapshot] = capture.of("snapshot")
    [stream] = snapshot["streams"]
    sent = "".join(e["text"] for e in capture.events() if e["kind"] == "member_delta")
    assert stream["model"] == "slow" and stream["text"] == sent  # flushed before the snapshot
    assert widget.live_turn["ui"]["status"] == "running"
    await widget.cancel()
    await widget.wait()


async def test_reload_rebuilds_conversation_from_log(trio, monkeypatch, tmp_path):
    first, _ = make_widget(monkeypatch, tmp_path, config=trio)
    await first.ask("One?")
    await first.ask("Two?")
    # a new kernel: a new widget on the same run log, no config given
    second, _ = make_widget(monkeypatch, tmp_path)
    assert second.conversation.id == first.conversation.id
    assert second.conversation.turn_count == 2
    assert second.conversation.histories == first.conversation.histories
    assert second.config["models"] == {"a": 1, "b": 1}
    assert [t["original_prompt"] for t in second.turns] == ["One?", "Two?"]
    assert [r.to_dict() for r in second.results] == [r.to_dict() for r in first.results]
    assert second.turns == first.turns
    third = await second.ask("Three?")
    assert third.turn == 3 and third.conversation_id == first.conversation.id


async def test_a_run_left_running_shows_as_interrupted(trio, monkeypatch, tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    config = {**trio, "confidence_threshold": 0.8}
    store.record(RunStarted(run_id="r1", prompt="Half?", config=config, conversation_id="c1"))
    store.record(IterationStarted(run_id="r1", iteration=1))
    store.record(MemberDelta(run_id="r1", model="a", instance=1, iteration=1, text="x"))
    store.record(
        MemberDone(
            run_id="r1",
            model="a",
            instance=1,
            iteration=1,
            text="Half done.",
            answer="Half done.",
            latency_ms=1.0,
            served_by="a",
        )
    )
    widget, _ = make_widget(monkeypatch, tmp_path, store=store)
    [turn] = widget.turns
    assert turn["ui"]["status"] == "interrupted" and turn["metadata"]["status"] == "interrupted"
    assert turn["iterations"][0]["members"][0]["answer"] == "Half done."
    assert widget.past_runs[0]["status"] == "interrupted"


def test_restore_false_and_store_false(trio, monkeypatch, tmp_path):
    widget, _ = make_widget(monkeypatch, tmp_path, config=trio, store=False, restore=False)
    assert widget.store is None and widget.past_runs == [] and widget.turns == []


async def test_restore_false_starts_a_new_conversation_even_after_ready(
    trio, monkeypatch, tmp_path
):
    first, _ = make_widget(monkeypatch, tmp_path, config=trio)
    await first.ask("Is it?")
    old_conversation = first.conversation_id

    fresh, _ = make_widget(monkeypatch, tmp_path, config=trio, restore=False)
    fresh.handle_message({"type": "ready"})  # what every page sends when it renders
    assert fresh.turns == [] and fresh.conversation_id != old_conversation
    await fresh.ask("A new question.")
    rows = runs.list(path=tmp_path / "runs.db")
    assert {r["conversation_id"] for r in rows} == {old_conversation, fresh.conversation_id}
    assert [t["original_prompt"] for t in fresh.turns] == ["A new question."]
    # the default still restores the latest conversation when the page says ready
    again, _ = make_widget(monkeypatch, tmp_path, config=trio)
    again.handle_message({"type": "ready"})
    assert again.conversation_id == fresh.conversation_id


def test_default_config_is_the_offline_demo(monkeypatch, tmp_path):
    widget, _ = make_widget(monkeypatch, tmp_path)
    assert widget.config["models"] == {"demo-analyst": 1, "demo-optimist": 1, "demo-skeptic": 1}
    assert widget.config["arbiter"] == "demo-arbiter"


def test_bundle_is_built_and_used():
    static = ROOT / "src" / "consortium_lab" / "static"
    if not (static / "widget.js").exists():
        pytest.skip("front-end bundle not built (npm run build in widgets/)")
    esm = ChatWidget(store=False, restore=False)._esm
    assert "render" in esm and len(esm) > 100_000  # vega, marked and DOMPurify are inside
    for needle in ("esm.sh", "unpkg.com", "cdn.jsdelivr.net"):
        assert f'from "https://{needle}' not in esm and f"import('https://{needle}" not in esm
    assert VegaChart({"mark": "bar"}).spec == {"mark": "bar"}


def test_app_notebooks_and_voila_command():
    from consortium_lab.apps import voila as app

    nb_dir = app.notebooks_dir()
    assert {p.name for p in nb_dir.glob("*.ipynb")} >= {
        "chat.ipynb",
        "dashboard.ipynb",
        "quickstart.ipynb",
    }
    command = app.voila_command(8899)
    assert "--Voila.ip=127.0.0.1" in command and "--template=consortium" in command
    assert "--preheat_kernel=True" in command
    assert f"--VoilaKernelManager.fill_delay={app.POOL_FILL_DELAY}" in command
    assert "--preheat_kernel=True" not in app.voila_command(8899, preheat=False)
    template = app.jupyter_data_dir() / "voila" / "templates" / "consortium" / "index.html.j2"
    assert "cdn.jsdelivr.net" not in template.read_text()
    assert str(app.jupyter_data_dir()) in app.voila_env({})["JUPYTER_PATH"]


def test_voila_preheats_the_chat_and_the_dashboard(isolated_home):
    """The pools Voila reads from the voila.json its command names: the chat's pool_size, one
    dashboard kernel (or as many as asked), the other notebooks none; no pools without
    preheat."""
    from consortium_lab.apps import voila as app

    def pools(command: list[str]) -> dict:
        folder = next(a.split("=", 1)[1] for a in command if "config_file_paths=" in a)
        config = json.loads((Path(folder) / "voila.json").read_text())
        return config.get("VoilaKernelManager", {}).get("kernel_pools_config", {})

    assert pools(app.voila_command(8899, pool_size=2)) == {
        "default": {"pool_size": 0},
        "chat.ipynb": {"pool_size": 2},
        "dashboard.ipynb": {"pool_size": 1},
    }
    assert pools(app.voila_command(8899, dashboard_pool_size=0))["dashboard.ipynb"] == {
        "pool_size": 0
    }
    assert pools(app.voila_command(8899, preheat=False)) == {}


def test_chat_widget_uses_demo_models_without_a_key(fake_openai, tmp_path):
    from consortium_lab.apps import voila as app

    assert not app.provider_key_set()
    widget = app.chat_widget(store=tmp_path / "runs.db")
    assert widget.config["arbiter"] == "demo-arbiter"
    fake_openai.add_model("local-model", ModelScript(reply=member_reply("Hi.")))
    assert app.provider_key_set()  # a usable non-demo model


async def test_dashboard_from_the_run_log(trio, tmp_path):
    from consortium_lab.apps import voila as app

    db = tmp_path / "runs.db"
    empty = app.dashboard(path=db)
    assert "No runs yet" in empty.children[1].value
    widget = ChatWidget(config=trio, store=db)
    await widget.ask("Q?")
    board = app.dashboard(path=db)
    text = "".join(getattr(c, "value", "") for c in board.children)
    assert "mean final confidence" in text and "a, b → judge" in text
    [grid] = [c for c in board.children if isinstance(c, VegaChartGrid)]
    assert len(grid.specs) == 5 and all("$schema" in spec for spec in grid.specs)


@pytest.mark.timeout(240)
def test_notebooks_execute(isolated_home):
    """The quickstart and the chat notebook run top to bottom in a real kernel (the demo
    models, this test's fresh home)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for name in ("quickstart.ipynb", "chat.ipynb"):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        nbclient.NotebookClient(nb, timeout=180, kernel_name="python3").execute()
        errors = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
            if o.output_type == "error"
        ]
        assert errors == [], (name, errors)
        last = nb.cells[-1].outputs[-1]
        assert "application/vnd.jupyter.widget-view+json" in last.get("data", {}), name


@pytest.mark.timeout(300)
def test_frontend_vitest():
    """The front end's own unit tests (sanitisation with the XSS corpus, delta application,
    state reconstruction) and its type check."""
    npm = shutil.which("npm")
    widgets = ROOT / "widgets"
    if npm is None or not (widgets / "node_modules").is_dir():
        pytest.skip("npm or widgets/node_modules missing (run `npm ci` in widgets/)")
    env = {**os.environ, "CI": "1"}
    for script in ("test",):  # tsc --noEmit, then vitest
        proc = subprocess.run(
            [npm, "run", "--silent", script],
            cwd=widgets,
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
