"""Download my data / Delete my data in the chat (widget/mydata.py), on real SQLite run logs.

Page messages are simulated with ``widget.handle_message``; what the kernel sends is captured
and checked against the message schema (``Capture`` of test_widget). In hub mode a real gateway
service (a subprocess before the loopback model server) answers ``DELETE /v1/me/data``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("anywidget")

from consortium_lab import configs, runs
from consortium_lab.apps import voila
from consortium_lab.apps.hub_chat import GatewayChatWidget
from consortium_lab.engine.events import RunStarted
from consortium_lab.sinks.runlog import RunStore
from test_service import ADMIN, ALICE, BOB
from test_widget import Capture, make_widget

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

SECRET = "a-test-secret-for-user-hashes-0123456789"


@pytest.fixture
def duo(fake_openai):
    fake_openai.add_model("a", ModelScript(reply=member_reply("Blue, said Alpha.", 0.8)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Blue.", 0.9)))
    return {"models": {"a": 1}, "arbiter": "judge"}


async def _two_runs_and_two_configs(widget: Any, db: Any) -> list[str]:
    for prompt in ("mydata-marker-one?", "mydata-marker-two?"):
        widget.handle_message({"type": "ask", "prompt": prompt})
        await widget.wait()
    widget.handle_message({"type": "save_config", "name": "duo"})
    widget.handle_message({"type": "clone_config", "source": "duo", "target": "duo2"})
    ids = [r["id"] for r in runs.list(path=db)]
    assert len(ids) == 2
    return ids


async def test_download_my_data_holds_every_run_and_saved_config(duo, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo)
    db = tmp_path / "runs.db"
    ids = await _two_runs_and_two_configs(widget, db)
    widget.handle_message({"type": "download_my_data", "req": "d1"})
    [download] = capture.of("download")
    assert download["req"] == "d1" and download["mime"] == "application/json"
    assert download["filename"].startswith("consortium-my-data-")
    assert download["filename"].endswith(".json")
    data = json.loads(download["content"])
    assert sorted(r["metadata"]["run_id"] for r in data["runs"]) == sorted(ids)
    prompts = {r["original_prompt"] for r in data["runs"]}
    assert prompts == {"mydata-marker-one?", "mydata-marker-two?"}
    # Each run as the per-run export has it.
    for run in data["runs"]:
        assert run == json.loads(runs.export(run["metadata"]["run_id"], path=db))
    assert sorted(data["configs"]) == ["duo", "duo2"]
    assert data["configs"]["duo"]["models"] == duo["models"]


async def test_delete_my_data_is_refused_while_a_run_is_in_progress(duo, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo)
    db = tmp_path / "runs.db"
    ids = await _two_runs_and_two_configs(widget, db)
    widget.handle_message({"type": "ask", "prompt": "A third?"})
    assert widget.status == "running"
    widget.handle_message({"type": "delete_my_data", "confirm": widget.user_name, "req": "x1"})
    refused = await capture.answer("notice", "x1")
    assert refused["level"] == "error" and "a run is in progress" in refused["message"]
    await widget.wait()
    assert set(ids) < {r["id"] for r in runs.list(path=db)}
    assert [s.name for s in configs.list()] == ["duo", "duo2"]
    # Not confirmed by the user name (another name, a different case): refused, nothing deleted.
    for n, typed in enumerate(("someone-else", widget.user_name.upper() + "X", "")):
        widget.handle_message({"type": "delete_my_data", "confirm": typed, "req": f"x2{n}"})
        refused = (await capture.answer("notice", f"x2{n}"))["message"]
        assert f"type your user name ({widget.user_name})" in refused, refused
        assert "nothing was deleted" in refused
    widget.handle_message({"type": "delete_my_data", "req": "x3"})
    assert "confirm" in (await capture.answer("notice", "x3"))["message"]
    assert len(runs.list(path=db)) == 3


async def test_delete_my_data_removes_runs_and_configs_and_starts_anew(duo, monkeypatch, tmp_path):
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo)
    db = tmp_path / "runs.db"
    await _two_runs_and_two_configs(widget, db)
    before = widget.conversation_id
    assert widget.turns and widget.past_runs and widget.saved_configs
    widget.handle_message({"type": "delete_my_data", "confirm": widget.user_name, "req": "del"})
    done = await capture.answer("notice", "del")
    assert done == {
        "type": "notice",
        "level": "info",
        "message": "Deleted 2 runs and 2 saved configs.",
        "req": "del",
    }
    assert runs.list(path=db) == [] and configs.list() == []
    assert widget.turns == [] and widget.past_runs == [] and widget.saved_configs == []
    assert widget.conversation_id != before and widget.conversation.turn_count == 0
    # Gone from the file's bytes too (vacuumed), and a reloaded page shows an empty history.
    widget.store.close()
    for file in tmp_path.glob("runs.db*"):
        assert b"mydata-marker" not in file.read_bytes(), file
    reloaded, _ = make_widget(monkeypatch, tmp_path, config=duo)
    assert reloaded.turns == [] and reloaded.past_runs == []
    # The chat goes on after it.
    result = await reloaded.ask("After?")
    assert result.status == "completed" and len(runs.list(path=db)) == 1


async def test_a_run_still_marked_running_is_kept_and_the_answer_says_so(
    duo, monkeypatch, tmp_path
):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    store.record(RunStarted(run_id="cut", prompt="Cut off?", config=duo, conversation_id="c0"))
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo, store=store)
    await widget.ask("Finished?")
    widget.handle_message({"type": "delete_my_data", "confirm": widget.user_name, "req": "k"})
    message = (await capture.answer("notice", "k"))["message"]
    assert message.startswith("Deleted 1 run and 0 saved configs. Kept 1 run still marked")
    assert [r["id"] for r in runs.list(path=db)] == ["cut"]
    assert [r["id"] for r in widget.past_runs] == ["cut"]


def _hub_chat(gateways: Any, monkeypatch: Any, **settings: Any) -> tuple[Any, GatewayChatWidget]:
    gateways.provider("m1", ModelScript(reply=member_reply("alice-marker-answer.", 0.9)))
    gateways.provider("m2", ModelScript(reply="bob-marker-answer."))
    gateways.provider("judge", ModelScript(reply=arbiter_reply("Joint.", 0.95)))
    service = gateways.start(**settings)
    defaults = {"members": ["m1"], "arbiter": "judge"}
    assert service.request("PUT", "/admin/defaults", ADMIN, defaults).status == 200
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_URL", service.url)
    monkeypatch.setenv("CONSORTIUM_LAB_GATEWAY_TOKEN", ALICE)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    _banner, chat = voila.chat_widget(restore=False).children
    assert isinstance(chat, GatewayChatWidget)
    assert chat.user_name == "alice"  # the hub user is typed to confirm a deletion
    return service, chat


def _files(root: Any) -> list[Any]:
    return [f for f in root.rglob("*") if f.is_file()]


async def test_in_a_hub_deleting_also_deletes_at_the_gateway(gateways, monkeypatch, isolated_home):
    service, chat = _hub_chat(gateways, monkeypatch, user_hash_secret=SECRET)
    capture = Capture()
    monkeypatch.setattr(chat, "send", capture)
    assert (await chat.ask("What?")).status == "completed"
    assert service.chat(BOB, "m2", "Q").status == 200
    for root in (isolated_home.root, gateways.root):  # there before, so the check below bites
        assert any(b"alice-marker-answer" in f.read_bytes() for f in _files(root)), root
    chat.handle_message({"type": "delete_my_data", "confirm": "alice", "req": "hub"})
    done = await capture.answer("notice", "hub")
    assert done["level"] == "info", done
    assert done["message"].startswith("Deleted 1 run and 0 saved configs. The gateway deleted")
    assert "usage record" in done["message"]
    assert chat.turns == [] and chat.past_runs == []
    audit = service.request("GET", "/admin/audit?action=user.data_deleted", ADMIN).json()
    assert len(audit["entries"]) == 1
    # Alice's answer is in no file of her home (run log, llm's log) nor of the gateway (its
    # cache, vacuumed); Bob's cached answer is untouched.
    chat.store.close()
    service.stop()
    home, gateway = _files(isolated_home.root), _files(gateways.root)
    assert home and gateway
    for file in home + gateway:
        assert b"alice-marker-answer" not in file.read_bytes(), file
    assert any(b"bob-marker-answer" in f.read_bytes() for f in gateway)


async def test_in_a_hub_a_gateway_refusal_is_shown_not_swallowed(gateways, monkeypatch):
    # No user_hash_secret: the gateway answers 503 not_configured.
    service, chat = _hub_chat(gateways, monkeypatch)
    capture = Capture()
    monkeypatch.setattr(chat, "send", capture)
    assert (await chat.ask("What?")).status == "completed"
    chat.handle_message({"type": "delete_my_data", "confirm": "alice", "req": "h1"})
    refused = await capture.answer("notice", "h1")
    assert refused["level"] == "error"
    message = refused["message"]
    assert message.startswith("Deleted 1 run and 0 saved configs. But the gateway did not")
    assert service.url in message and "user_hash_secret" in message, message
    assert message.endswith("Delete your data again to retry.")
    # Unreachable: said so, with the URL.
    service.stop()
    chat.handle_message({"type": "delete_my_data", "confirm": "alice", "req": "h2"})
    unreachable = (await capture.answer("notice", "h2"))["message"]
    assert "could not be reached" in unreachable and service.url in unreachable, unreachable


def test_the_name_to_type_is_the_hub_user_else_the_os_user(monkeypatch):
    import getpass

    from consortium_lab.widget.mydata import data_owner

    monkeypatch.setenv("JUPYTERHUB_USER", "carol")
    assert data_owner() == "carol"
    monkeypatch.delenv("JUPYTERHUB_USER")
    assert data_owner() == getpass.getuser()


async def test_a_new_retention_choice_purges_at_once(duo, monkeypatch, tmp_path):
    """Saving fewer days deletes the runs they no longer keep right away, from the file's
    bytes too, not at the server's next purge; the notice says how many went."""
    from datetime import UTC, datetime, timedelta

    from test_purge import holds, sql

    monkeypatch.delenv("CONSORTIUM_LAB_RETENTION_DAYS", raising=False)
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo)
    db = tmp_path / "runs.db"
    # One conversation: it is kept, and its title (the first prompt) must not keep the old text.
    ids = await _two_runs_and_two_configs(widget, db)
    old = next(r["id"] for r in runs.list(path=db) if "mydata-marker-one" in r["prompt"])
    started = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    sql(db, "UPDATE runs SET started_at = ? WHERE id = ?", (started, old))
    assert holds(db, "mydata-marker-one")
    widget.handle_message({"type": "set_retention", "days": 60, "req": "keep"})
    said = await capture.answer("notice", "keep")
    assert said["level"] == "info" and "Deleted" not in said["message"], said
    assert {r["id"] for r in runs.list(path=db)} == set(ids)
    widget.handle_message({"type": "set_retention", "days": 30, "req": "fewer"})
    said = await capture.answer("notice", "fewer")
    assert said["level"] == "info", said
    assert said["message"].endswith("Deleted 1 older run now."), said
    assert [r["id"] for r in runs.list(path=db)] == [i for i in ids if i != old]
    assert not holds(db, "mydata-marker-one") and holds(db, "mydata-marker-two")
    assert old not in {r["id"] for r in widget.past_runs}
    (title,) = sql(db, "SELECT title FROM conversations")
    assert title == ("mydata-marker-two?",)


async def test_deleting_a_conversations_first_run_retitles_it(duo, monkeypatch, tmp_path):
    """The title was the first prompt: deleting that run leaves none of its text behind."""
    from test_purge import sql

    widget, _capture = make_widget(monkeypatch, tmp_path, config=duo)
    db = tmp_path / "runs.db"
    await _two_runs_and_two_configs(widget, db)
    first = next(r["id"] for r in runs.list(path=db) if "mydata-marker-one" in r["prompt"])
    widget.handle_message({"type": "delete_run", "id": first})
    assert sql(db, "SELECT title FROM conversations") == [("mydata-marker-two?",)]
    assert not [r for r in runs.list(path=db) if "mydata-marker-one" in r["prompt"]]


async def test_a_user_picks_fewer_retention_days_and_the_smaller_wins(duo, monkeypatch, tmp_path):
    from consortium_lab.paths import data_dir
    from consortium_lab.sinks.runlog import chosen_retention_days, effective_retention_days

    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "90")
    widget, capture = make_widget(monkeypatch, tmp_path, config=duo)
    assert widget.retention == {"max": 90, "chosen": None, "error": ""}
    widget.handle_message({"type": "set_retention", "days": 30, "req": "r1"})
    said = await capture.answer("notice", "r1")
    assert said["level"] == "info"
    assert said["message"].startswith("Runs older than 30 days are deleted")
    assert widget.retention == {"max": 90, "chosen": 30, "error": ""}
    assert (data_dir() / "retention.json").is_file()
    assert effective_retention_days(chosen_retention_days()) == 30
    # More than the site's maximum: stored, but the site's 90 wins.
    widget.handle_message({"type": "set_retention", "days": 365, "req": "r2"})
    assert (await capture.answer("notice", "r2"))["message"].startswith("Runs older than 90 days")
    assert effective_retention_days(chosen_retention_days()) == 90
    # Bad days: refused, naming the problem; the last choice stays.
    for n, bad in enumerate((0, -3)):
        widget.handle_message({"type": "set_retention", "days": bad, "req": f"b{n}"})
        refused = await capture.answer("notice", f"b{n}")
        assert refused["level"] == "error" and "at least 1 day" in refused["message"], refused
    assert chosen_retention_days() == 365
    # No choice: as long as the site allows.
    widget.handle_message({"type": "set_retention", "days": None, "req": "r3"})
    await capture.answer("notice", "r3")
    assert widget.retention["chosen"] is None and chosen_retention_days() is None
    monkeypatch.delenv("CONSORTIUM_LAB_RETENTION_DAYS")
    widget.handle_message({"type": "set_retention", "days": None, "req": "r4"})
    kept = (await capture.answer("notice", "r4"))["message"]
    assert kept == "Your runs are kept until you delete them."
    # A malformed operator setting is shown, named.
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "soon")
    reloaded, _ = make_widget(monkeypatch, tmp_path, config=duo)
    assert "CONSORTIUM_LAB_RETENTION_DAYS" in reloaded.retention["error"]
