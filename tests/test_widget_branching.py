"""Regenerate, retry and edit-and-resend in the chat widget: a new branch of the conversation,
the old turn kept, the branch rebuilt from the run log after a reload, regenerate past the
response cache (counted on the loopback server)."""

from __future__ import annotations

import pytest

pytest.importorskip("anywidget")

from consortium_lab.engine.conversation import lineage
from consortium_lab.engine.events import RunStarted
from consortium_lab.widget.branching import plan_resend
from test_widget import make_widget

from fake_openai import Fault, ModelScript
from helpers import arbiter_reply, member_reply


@pytest.fixture
def duo(fake_openai):
    fake_openai.add_model("a", ModelScript(reply=member_reply("Alpha says blue.", 0.8)))
    fake_openai.add_model("b", ModelScript(reply=member_reply("Beta says blue too.", 0.7)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Blue.", 0.9)))
    return {"models": {"a": 1, "b": 1}, "arbiter": "judge"}


async def test_regenerate_bypasses_the_cache_and_retry_uses_it(
    duo, fake_openai, monkeypatch, tmp_path
):
    widget, _ = make_widget(monkeypatch, tmp_path, config=duo)
    first = await widget.ask("Why is the sky blue?")
    assert len(fake_openai.requests_for("a")) == 1
    # the same prompt again in a new chat is served from the cache: the cache is on
    widget.new_chat()
    again = await widget.ask("Why is the sky blue?")
    assert len(fake_openai.requests_for("a")) == 1
    assert [m.cached for m in again.final_answers] == [True, True]
    regenerated = await widget.resend(first.run_id, "regenerate")
    assert len(fake_openai.requests_for("a")) == 2
    assert len(fake_openai.requests_for("judge")) == 2
    assert [m.cached for m in regenerated.final_answers] == [False, False]
    assert regenerated.prompt == first.prompt and regenerated.config == first.config
    retried = await widget.resend(first.run_id, "retry")
    assert len(fake_openai.requests_for("a")) == 2
    assert [m.cached for m in retried.final_answers] == [True, True]


async def test_edit_and_resend_branches_keeps_the_old_turn_and_survives_reload(
    duo, fake_openai, monkeypatch, tmp_path
):
    widget, _ = make_widget(monkeypatch, tmp_path, config=duo)
    one = await widget.ask("One?")
    two = await widget.ask("Two?")
    old_id = widget.conversation_id
    edited = await widget.resend(two.run_id, "edit", "Two, edited?")
    assert widget.conversation_id != old_id
    assert edited.turn == 2 and edited.conversation_id == widget.conversation_id
    assert [t["original_prompt"] for t in widget.turns] == ["One?", "Two, edited?"]
    # the edited turn saw turn 1 in each member's history, not the old turn 2
    seen = fake_openai.requests_for("a")[-1].prompt_text
    assert "One?" in seen and "Two, edited?" in seen and "Two?" not in seen
    # the old turn is kept, in its own conversation
    store = widget.store
    assert [r["id"] for r in store.list_runs(conversation_id=old_id)] == [two.run_id, one.run_id]
    started = store.get_events(edited.run_id)[0]
    assert isinstance(started, RunStarted) and started.branch_of == old_id
    assert lineage(store, widget.conversation_id) == [(old_id, 2), (widget.conversation_id, None)]

    # a reload (a new kernel on the same run log) shows the branch with the shared turn
    reloaded, _ = make_widget(monkeypatch, tmp_path)
    assert reloaded.conversation_id == widget.conversation_id
    assert [t["original_prompt"] for t in reloaded.turns] == ["One?", "Two, edited?"]
    assert [r.run_id for r in reloaded.results] == [one.run_id, edited.run_id]
    assert reloaded.conversation.histories == widget.conversation.histories
    three = await reloaded.ask("Three?")
    assert three.turn == 3 and three.conversation_id == widget.conversation_id
    seen = fake_openai.requests_for("a")[-1].prompt_text
    assert "Two, edited?" in seen and "Two?" not in seen

    # a branch of the branch: turn 3 edited shares turn 1 of the root and turn 2 of the branch
    branch_id = reloaded.conversation_id
    again = await reloaded.resend(three.run_id, "edit", "Three, edited?")
    assert lineage(store, again.conversation_id) == [
        (old_id, 2),
        (branch_id, 3),
        (again.conversation_id, None),
    ]
    expected = ["One?", "Two, edited?", "Three, edited?"]
    assert [t["original_prompt"] for t in reloaded.turns] == expected
    seen = fake_openai.requests_for("a")[-1].prompt_text
    assert "Two, edited?" in seen and "Three?" not in seen
    assert [t["original_prompt"] for t in make_widget(monkeypatch, tmp_path)[0].turns] == expected

    # editing turn 1 shares nothing
    root = await reloaded.resend(one.run_id, "edit", "Zero?")
    assert root.turn == 1 and [t["original_prompt"] for t in reloaded.turns] == ["Zero?"]
    # opening the old conversation shows the old turns, untouched
    reloaded.handle_message({"type": "open_run", "id": two.run_id})
    assert [t["original_prompt"] for t in reloaded.turns] == ["One?", "Two?"]


async def test_retry_after_a_failed_turn(duo, fake_openai, monkeypatch, tmp_path):
    fake_openai.script("judge").fail_always = Fault.status(400, "bad request", should_retry=False)
    widget, _ = make_widget(monkeypatch, tmp_path, config=duo)
    failed = await widget.ask("Fails?")
    assert failed.status == "failed" and [r.status for r in widget.results] == ["failed"]
    fake_openai.script("judge").fail_always = None
    retried = await widget.resend(failed.run_id, "retry")
    assert retried.status == "completed" and retried.prompt == "Fails?"
    assert [r.status for r in widget.results] == ["completed"]
    assert widget.store.get_run_row(failed.run_id)["status"] == "failed"


async def test_bad_resend_requests_are_refused_by_name(duo, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo)
    run = await widget.ask("One?")
    widget.handle_message(
        {"type": "resend", "id": run.run_id, "mode": "edit", "prompt": " ", "req": 7}
    )
    notice = capture.of("notice")[-1]
    assert notice["level"] == "error" and notice["req"] == 7
    assert "edited prompt is empty" in notice["message"]
    widget.handle_message({"type": "resend", "id": "nosuch", "mode": "regenerate", "req": 8})
    assert "no run with id 'nosuch'" in capture.of("notice")[-1]["message"]
    widget.handle_message({"type": "resend", "id": run.run_id, "mode": "again", "req": 9})
    assert "mode" in capture.of("notice")[-1]["message"]
    with pytest.raises(ValueError, match="no prompt may be given"):
        plan_resend(widget.store, run.run_id, "regenerate", "Other?")
    assert [t["original_prompt"] for t in widget.turns] == ["One?"]
    # a good one starts at once and says where the earlier turn went
    widget.handle_message({"type": "resend", "id": run.run_id, "mode": "retry", "req": 10})
    assert capture.of("notice")[-1] == {
        "type": "notice",
        "level": "info",
        "message": "Asked again on a new branch; the earlier turn is kept.",
        "req": 10,
    }
    await widget.wait()
    assert [r.status for r in widget.results] == ["completed"]
    assert widget.results[0].run_id != run.run_id
