"""The chat widget's "for prompts like this" hint: answered from the run log in a worker
thread, latest request only, never an error notice; the message fits the one schema."""

from __future__ import annotations

import threading

from consortium_lab.widget import recommending
from recommend_data import COOKING_PROMPTS, PYTHON_PROMPTS, script_topic_models
from test_widget import make_widget


async def test_hint_from_the_widgets_own_run_log(fake_openai, monkeypatch, tmp_path):
    config = script_topic_models(fake_openai)
    widget, capture = make_widget(monkeypatch, tmp_path, config=config)
    threads: list[str] = []
    suggest = recommending.PromptHints._suggest

    def spy(self, prompt, available):
        threads.append(threading.current_thread().name)
        return suggest(self, prompt, available)

    monkeypatch.setattr(recommending.PromptHints, "_suggest", spy)

    widget.handle_message({"type": "recommend", "prompt": "Sort a python list", "req": "r1"})
    early = await capture.answer("recommendation", "r1")
    assert early["members"] == [] and early["enough_history"] is False
    assert early["message"].startswith("Not enough history: 0 past runs")

    for prompt in PYTHON_PROMPTS + COOKING_PROMPTS:
        await widget.ask(prompt)
    widget.handle_message({"type": "recommend", "prompt": "Sort a python list", "req": "r2"})
    hint = await capture.answer("recommendation", "r2")
    assert hint["members"] == ["py-expert", "chef"] and hint["support"] == 5
    assert hint["enough_history"] is True and hint["min_runs"] == 5
    assert hint["message"] == "For prompts like this: py-expert, chef (5 similar past runs)"
    assert threads and threading.main_thread().name not in threads  # off the loop's thread

    # A deleted run leaves the index: four similar runs are too few now.
    python_run = next(r for r in widget.past_runs if r["prompt"] == PYTHON_PROMPTS[0])
    widget.handle_message({"type": "delete_run", "id": python_run["id"]})
    widget.handle_message({"type": "recommend", "prompt": "Sort a python list", "req": "r3"})
    fewer = await capture.answer("recommendation", "r3")
    assert fewer["support"] == 4 and fewer["members"] == [] and not fewer["enough_history"]
    assert capture.of("notice") == []


async def test_only_the_latest_waiting_request_is_answered(fake_openai, monkeypatch, tmp_path):
    config = script_topic_models(fake_openai)
    widget, capture = make_widget(monkeypatch, tmp_path, config=config)
    for req in ("a", "b", "c"):
        widget.handle_message({"type": "recommend", "prompt": f"cook onions {req}", "req": req})
    await capture.answer("recommendation", "c")
    answered = [m["req"] for m in capture.of("recommendation")]
    # The three came before the worker started: only the latest was worth answering.
    assert answered == ["c"]


async def test_a_failure_is_a_quiet_empty_hint(fake_openai, monkeypatch, tmp_path):
    config = script_topic_models(fake_openai)
    widget, capture = make_widget(monkeypatch, tmp_path, config=config)

    def broken(self, prompt, available):
        raise RuntimeError("index broke")

    monkeypatch.setattr(recommending.PromptHints, "_suggest", broken)
    widget.handle_message({"type": "recommend", "prompt": "x", "req": "r1"})
    reply = await capture.answer("recommendation", "r1")
    assert reply["error"] == "index broke" and reply["message"] == ""
    assert not reply.get("members") and not reply.get("enough_history")
    assert capture.of("notice") == []
