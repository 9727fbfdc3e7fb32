"""The run log (consortium_lab.sinks.runlog) and the public consortium_lab.runs module."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consortium_lab import runs
from consortium_lab.engine.events import (
    ArbiterDelta,
    Event,
    MemberDelta,
    MemberDone,
    MemberFailed,
    RunStarted,
    SynthesisReady,
    parse_event,
)
from consortium_lab.sinks.runlog import (
    MIGRATIONS,
    RunStore,
    owner_is_alive,
    process_start_token,
)

from _store_writer import FAILING_MODEL, build_run_events, expected_counts, member_model

WRITER = Path(__file__).with_name("_store_writer.py")
LINUX = sys.platform.startswith("linux") and Path("/proc/self/stat").exists()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every file of these tests under tmp_path (whether or not conftest does too)."""
    home = tmp_path / "home"
    for name, path in {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "LLM_USER_PATH": tmp_path / "llm",
        "CONSORTIUM_LAB_HOME": tmp_path / "consortium-lab",
    }.items():
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("CONSORTIUM_LAB_DB", raising=False)
    monkeypatch.setenv("LLM_LOAD_PLUGINS", "")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[RunStore]:
    with RunStore(db_path) as opened:
        yield opened


def new_id() -> str:
    return uuid.uuid4().hex


def count(path: Path, table: str, where: str = "", params: Iterable[Any] = ()) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(conn.execute(sql, list(params)).fetchone()[0])
    finally:
        conn.close()


def stored(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, (MemberDelta, ArbiterDelta))]


def record(store: RunStore, events: Iterable[Event]) -> list[Event]:
    events = list(events)
    store.record_many(events, strict=True)
    return events


# -- one full run -------------------------------------------------------------------------------


def test_full_run_fills_every_table(store: RunStore, db_path: Path) -> None:
    run_id = new_id()
    events = record(store, build_run_events(run_id, members=3, iterations=2))
    expected = expected_counts(3, 2)

    row = store.get_run_row(run_id)
    assert row is not None
    assert row["status"] == "completed"
    assert row["conversation_id"] == run_id  # no conversation id given: the run starts one
    assert row["turn"] == 1
    assert row["prompt"] == "What is the answer?"
    assert row["config"]["arbiter"] == "arbiter-model"
    assert row["mode"] == "consortium"
    assert row["arbiter"] == "arbiter-model"
    assert row["iteration_count"] == 2
    assert row["final_synthesis"] == "synthesis 2"
    assert row["final_confidence"] == pytest.approx(0.8)
    assert row["finished_at"] == events[-1].at
    assert row["started_at"] == events[0].at
    assert row["error"] is None
    assert row["owner_pid"] == os.getpid()
    assert row["owner_host"]
    assert row["heartbeat_at"]
    if LINUX:
        assert row["owner_started_at"] == process_start_token()

    members = store.member_responses(run_id)
    assert len(members) == expected["member_responses"] == count(db_path, "member_responses")
    done = [m for m in members if m["status"] == "done"]
    failed = [m for m in members if m["status"] == "failed"]
    assert len(done) == 6 and len(failed) == 2
    first = done[0]
    assert first["model"] == member_model(0)
    assert first["instance"] == 1
    assert first["iteration"] == 1
    assert first["stage"] == "answer"
    assert first["text"].startswith("<answer>")
    assert first["answer"] == f"{member_model(0)} says 1 to What is the answer?"
    assert first["thought_process"] == "thinking"
    assert first["confidence"] == pytest.approx(0.5)
    assert first["latency_ms"] == pytest.approx(100.0)
    assert first["first_token_ms"] == pytest.approx(10.0)
    assert (first["input_tokens"], first["output_tokens"]) == (11, 22)
    assert first["served_by"] == member_model(0)
    assert first["cached"] == 1
    assert first["attempts"] == 1
    assert first["response_id"] == f"resp-{run_id}-1-0"
    assert failed[0]["model"] == FAILING_MODEL
    assert failed[0]["error"] == "HTTP 500 from provider"
    assert failed[0]["error_type"] == "error"
    assert failed[0]["text"] == "par"

    decisions = store.arbiter_decisions(run_id)
    assert len(decisions) == expected["arbiter_decisions"]
    assert decisions[0]["synthesis"] == "synthesis 1"
    assert decisions[0]["refinement_areas"] == ["area"]
    assert decisions[0]["ranking"] == [1, 2, 3]
    assert decisions[0]["warnings"] == []
    assert decisions[0]["needs_iteration"] == 1
    assert decisions[1]["needs_iteration"] == 0
    assert decisions[0]["parse_ok"] == 1
    assert (decisions[0]["input_tokens"], decisions[0]["output_tokens"]) == (100, 50)

    # Every event but the deltas, in order, and they rebuild exactly.
    assert count(db_path, "events") == expected["events"]
    assert store.get_events(run_id) == stored(events)
    assert count(db_path, "events", "kind IN ('member_delta', 'arbiter_delta')") == 0

    conversations = store.list_conversations()
    assert [c["id"] for c in conversations] == [run_id]
    assert conversations[0]["title"] == "What is the answer?"
    assert conversations[0]["run_count"] == 1
    assert store.schema_version() >= 1


def test_schema_is_created_idempotently(db_path: Path) -> None:
    RunStore(db_path).close()
    RunStore(db_path).close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert versions == [version for version, _, _ in MIGRATIONS] == [1, 2, 3, 4, 5]
    assert {"conversations", "runs", "member_responses", "arbiter_decisions", "events"} <= tables
    assert {"evaluations", "eval_items", "eval_results"} <= tables


# -- schema 1 files, and the columns the records own ------------------------------------------

RUNLOG_V1 = Path(__file__).with_name("data") / "runlog-v1.db"


def _table(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def test_a_schema_1_run_log_is_migrated_and_reads_back_intact(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.write_bytes(RUNLOG_V1.read_bytes())
    before = {
        table: _table(path, f"SELECT * FROM {table} ORDER BY rowid")
        for table in ("runs", "conversations", "member_responses", "arbiter_decisions", "events")
    }
    assert [r["version"] for r in _table(path, "SELECT version FROM schema_migrations")] == [1]
    assert len(before["runs"]) == 3 and before["member_responses"]

    with RunStore(path) as store:
        assert store.schema_version() == 5
        versions = _table(path, "SELECT version, name FROM schema_migrations ORDER BY version")
        assert versions == [
            {"version": 1, "name": "initial"},
            {"version": 2, "name": "records"},
            {"version": 3, "name": "warnings"},
            {"version": 4, "name": "votes"},
            {"version": 5, "name": "evaluations"},
        ]
        # Nothing lost: every old row and value is still there, in the same order.
        for table, rows in before.items():
            after = _table(path, f"SELECT * FROM {table} ORDER BY rowid")
            assert [{k: row[k] for k in old} for old, row in zip(rows, after, strict=True)] == rows
        # The new columns are filled from the events, which always carried them (that
        # release priced nothing: cost stays unknown).
        for row in store.member_responses():
            assert isinstance(row["parse_warnings"], list) and row["cost"] is None
        decisions = store.arbiter_decisions()
        assert decisions and all(d["attempts"] == 1 and d["cost"] is None for d in decisions)
        for run in store.list_runs():
            records = store.member_records(run["id"])
            result = runs.get(run["id"], path=path)
            assert result.status == run["status"] == "completed"
            folded = [m for it in result.iterations for m in it.members]
            assert folded == records  # the table and the events tell the same story
            syntheses = [it.synthesis for it in result.iterations if it.synthesis]
            assert syntheses == store.synthesis_records(run["id"])
            assert result.to_dict()["synthesis"]["synthesis"] == run["final_synthesis"]
        conversation = next(r for r in store.list_runs() if r["turn"] == 2)["conversation_id"]
        history = store.conversation_history(conversation)
        assert history and all(len(turns) == 2 for turns in history.values())

    # Opened again: nothing more to apply, nothing changed.
    with RunStore(path) as again:
        assert again.schema_version() == 5
    assert len(_table(path, "SELECT * FROM schema_migrations")) == 5


def test_every_record_field_has_its_column(store: RunStore) -> None:
    from consortium_lab.engine.records import MemberRecord, SynthesisRecord

    def columns(table: str) -> list[str]:
        return [r["name"] for r in _table(store.path, f"PRAGMA table_info({table})")]

    for table, record in (
        ("member_responses", MemberRecord),
        ("arbiter_decisions", SynthesisRecord),
    ):
        missing = set(record.flat_fields()) - set(columns(table))
        assert not missing, f"{table} lacks {sorted(missing)}: add a migration"


def test_records_round_trip_through_the_tables(store: RunStore) -> None:
    run_id = new_id()
    events = list(build_run_events(run_id, iterations=1))
    record(store, events)
    members = [e for e in events if isinstance(e, (MemberDone, MemberFailed))]
    from consortium_lab.engine.records import MemberRecord, SynthesisRecord

    assert store.member_records(run_id) == [MemberRecord.of(e) for e in members]
    done = store.member_records(run_id)[0]
    assert done.cost == 0.25 and done.parse_warnings == ["no confidence stated"]
    assert done.usage.input_tokens == 11
    failed = store.member_records(run_id)[-1]
    assert failed.status == "failed" and failed.text == "par" and failed.error_type == "error"
    synthesis = next(e for e in events if isinstance(e, SynthesisReady))
    assert store.synthesis_records(run_id) == [SynthesisRecord.of(synthesis)]
    assert store.synthesis_records(run_id)[0].attempts == 2


def test_failed_and_cancelled_runs(store: RunStore) -> None:
    from consortium_lab.engine.events import RunFailed, RunFinished

    failed, cancelled = new_id(), new_id()
    record(store, build_run_events(failed, iterations=1, finish=False))
    store.record(RunFailed(run_id=failed, reason="all members failed", errors={"a#1": "x"}))
    record(store, build_run_events(cancelled, iterations=1, finish=False))
    store.record(RunFinished(run_id=cancelled, iterations=1, status="cancelled"))
    failed_row, cancelled_row = store.get_run_row(failed), store.get_run_row(cancelled)
    assert failed_row is not None and cancelled_row is not None
    assert (failed_row["status"], failed_row["error"]) == ("failed", "all members failed")
    assert cancelled_row["status"] == "cancelled"
    assert runs.get(failed, path=store.path).status == "failed"
    assert runs.get(cancelled, path=store.path).status == "cancelled"


def test_recording_failures_never_reach_the_run(
    store: RunStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = new_id()
    assert store.record(RunStarted(run_id=run_id, prompt="p", config={}))
    again = RunStarted(run_id=run_id, prompt="again", config={})
    with pytest.raises(ValueError, match=run_id):
        store.record(again, strict=True)
    assert store.record(again) is False  # the default: warn, do not raise
    assert "could not record run_started" in caplog.text
    assert len(store.get_events(run_id)) == 1
    closed = RunStore(db_path)
    closed.close()
    assert closed.record(build_run_finished(run_id)) is False
    with pytest.raises(RuntimeError, match="closed"):
        closed.record(build_run_finished(run_id), strict=True)


def test_list_newest_first_and_limit(db_path: Path) -> None:
    with RunStore(db_path) as store:
        ids = [new_id() for _ in range(3)]
        for run_id in ids:
            record(store, build_run_events(run_id, iterations=1))
    listed = runs.list(path=db_path)
    assert [r["id"] for r in listed] == list(reversed(ids))
    assert [r["id"] for r in runs.list(2, path=db_path)] == [ids[2], ids[1]]
    assert listed[0]["config"]["arbiter"] == "arbiter-model"


def test_default_path_comes_from_paths(tmp_path: Path) -> None:
    run_id = new_id()
    with RunStore() as store:
        record(store, build_run_events(run_id, iterations=1))
        assert store.path == tmp_path / "consortium-lab" / "runs.db"
    assert [r["id"] for r in runs.list()] == [run_id]


# -- runs module --------------------------------------------------------------------------------


def test_get_rebuilds_result(store: RunStore) -> None:
    run_id = new_id()
    record(store, build_run_events(run_id, members=2, iterations=2))
    result = runs.get(run_id, path=store.path)
    assert result.run_id == run_id
    assert result.status == "completed"
    assert [it.number for it in result.iterations] == [1, 2]
    assert len(result.iterations[0].members) == 3
    assert result.synthesis is not None and result.synthesis.synthesis == "synthesis 2"


def test_export_json_and_markdown(store: RunStore) -> None:
    run_id = new_id()
    record(store, build_run_events(run_id, members=2, iterations=1, prompt="Why is the sky blue?"))
    data = json.loads(runs.export(run_id, "json", path=store.path))
    assert data["metadata"]["run_id"] == run_id
    assert data["metadata"]["status"] == "completed"
    assert data["original_prompt"] == "Why is the sky blue?"
    assert data["synthesis"]["synthesis"] == "synthesis 1"
    assert json.loads(runs.export(run_id, path=store.path)) == data  # json is the default
    markdown = runs.export(run_id, "markdown", path=store.path)
    assert "Why is the sky blue?" in markdown
    assert "synthesis 1" in markdown


def test_unknown_ids_and_formats(store: RunStore) -> None:
    run_id = new_id()
    record(store, build_run_events(run_id, iterations=1))
    for call in (
        lambda: runs.get("nope-123", path=store.path),
        lambda: runs.export("nope-123", path=store.path),
        lambda: runs.delete("nope-123", path=store.path),
    ):
        with pytest.raises(KeyError, match="nope-123"):
            call()
    with pytest.raises(ValueError, match=r"'json'.*'markdown'"):
        runs.export(run_id, "yaml", path=store.path)


def test_delete_removes_every_row(store: RunStore, db_path: Path) -> None:
    conversation = "conv-" + new_id()
    first, second, other = new_id(), new_id(), new_id()
    record(store, build_run_events(first, conversation_id=conversation, turn=1))
    record(store, build_run_events(second, conversation_id=conversation, turn=2))
    record(store, build_run_events(other))

    runs.delete(first, path=db_path)
    for table in ("member_responses", "arbiter_decisions", "events"):
        assert count(db_path, table, "run_id = ?", [first]) == 0
        assert count(db_path, table, "run_id = ?", [second]) > 0
    assert store.get_run_row(first) is None
    assert count(db_path, "conversations", "id = ?", [conversation]) == 1  # second is left

    runs.delete(second, path=db_path)
    assert count(db_path, "conversations", "id = ?", [conversation]) == 0
    assert count(db_path, "runs") == 1
    assert store.get_events(other)
    with pytest.raises(KeyError, match=first):
        runs.get(first, path=db_path)


def test_to_pandas_one_row_per_member_response(store: RunStore) -> None:
    import pandas as pd

    first, second = new_id(), new_id()
    record(store, build_run_events(first, members=2, iterations=2))
    record(store, build_run_events(second, members=3, iterations=1))
    frame = runs.to_pandas(path=store.path)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 2 * 3 + 1 * 4
    assert set(frame["run_id"]) == {first, second}
    for column in ("run_status", "prompt", "arbiter", "model", "instance", "iteration", "status"):
        assert column in frame.columns
    assert (frame["run_status"] == "completed").all()
    assert frame["cached"].dtype == bool
    assert isinstance(frame["run_started_at"].dtype, pd.DatetimeTZDtype)
    assert frame.groupby("run_id").size().to_dict() == {first: 6, second: 4}


def test_to_pandas_empty_log(db_path: Path) -> None:
    frame = runs.to_pandas(path=db_path)
    assert frame.empty
    assert "run_id" in frame.columns and "model" in frame.columns


# -- conversations ------------------------------------------------------------------------------


def test_conversation_history_keeps_each_members_own_answers(store: RunStore) -> None:
    from consortium_lab.engine.events import MemberFailed, RunFinished

    conversation = "conv-" + new_id()

    def done(run_id: str, model: str, instance: int, iteration: int, text: str, **kw: Any) -> Event:
        return MemberDone(
            run_id=run_id,
            model=model,
            instance=instance,
            iteration=iteration,
            text=text,
            answer=text.upper(),
            latency_ms=1.0,
            served_by=model,
            **kw,
        )

    turn1, turn2 = new_id(), new_id()
    store.record(RunStarted(run_id=turn1, prompt="first?", config={}, conversation_id=conversation))
    store.record(done(turn1, "a", 1, 1, "a1 first draft"))
    store.record(done(turn1, "a", 2, 1, "a2 turn one"))
    store.record(done(turn1, "b", 1, 1, "b1 turn one"))
    store.record(done(turn1, "b", 1, 1, "b1 reviews a", stage="peer_review"))
    store.record(done(turn1, "a", 1, 2, "a1 turn one refined"))
    store.record(RunFinished(run_id=turn1, iterations=2))

    store.record(
        RunStarted(run_id=turn2, prompt="second?", config={}, conversation_id=conversation, turn=2)
    )
    store.record(done(turn2, "a", 1, 1, "a1 turn two"))
    store.record(done(turn2, "a", 2, 1, "a2 turn two"))
    store.record(
        MemberFailed(
            run_id=turn2, model="b", instance=1, iteration=1, error="boom", error_type="error"
        )
    )
    store.record(RunFinished(run_id=turn2, iterations=1))

    # Another conversation must not leak in.
    record(store, build_run_events(new_id(), conversation_id="conv-other"))

    assert store.conversation_history(conversation) == {
        ("a", 1): [("first?", "a1 turn one refined"), ("second?", "a1 turn two")],
        ("a", 2): [("first?", "a2 turn one"), ("second?", "a2 turn two")],
        ("b", 1): [("first?", "b1 turn one")],
    }
    assert store.conversation_history("conv-missing") == {}
    assert store.latest_conversation_id() == "conv-other"
    conversations = {c["id"]: c for c in store.list_conversations()}
    assert conversations[conversation]["run_count"] == 2
    assert conversations[conversation]["title"] == "first?"
    assert [r["id"] for r in store.list_runs(conversation_id=conversation)] == [turn2, turn1]


def test_title_is_truncated_to_one_line(store: RunStore) -> None:
    run_id = new_id()
    store.record(RunStarted(run_id=run_id, prompt="line one\nline two " + "x" * 200, config={}))
    title = store.list_conversations()[0]["title"]
    assert "\n" not in title and title.startswith("line one line two") and len(title) <= 80


# -- consume ------------------------------------------------------------------------------------


# -- heartbeat and liveness ---------------------------------------------------------------------


def wait_until(condition: Any, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_heartbeat_thread_refreshes_running_runs(db_path: Path) -> None:
    run_id = new_id()
    with RunStore(db_path, heartbeat_interval=0.05) as store:
        store.record(RunStarted(run_id=run_id, prompt="p", config={}))
        first = store.get_run_row(run_id)["heartbeat_at"]  # type: ignore[index]
        assert wait_until(lambda: store.get_run_row(run_id)["heartbeat_at"] != first)  # type: ignore[index]
        store.record(build_run_finished(run_id))
        # With no running run left, the timer thread ends.
        assert wait_until(lambda: store._heartbeat_thread is None)


def build_run_finished(run_id: str) -> Event:
    from consortium_lab.engine.events import RunFinished

    return RunFinished(run_id=run_id, iterations=0)


def _set_owner(path: Path, run_id: str, **columns: Any) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*columns.values(), run_id])
        conn.commit()
    finally:
        conn.close()


def _start_run(path: Path) -> str:
    run_id = new_id()
    with RunStore(path, recover=False) as store:
        record(store, build_run_events(run_id, iterations=1, finish=False))
    return run_id


def _status(path: Path, run_id: str) -> str:
    with RunStore(path, recover=False) as store:
        row = store.get_run_row(run_id)
    assert row is not None
    return str(row["status"])


def test_a_live_owner_in_this_process_is_never_marked(db_path: Path) -> None:
    with RunStore(db_path) as owner:
        run_id = new_id()
        owner.record(RunStarted(run_id=run_id, prompt="p", config={}))
        # Even with an ancient heartbeat: the owner (this process) is alive.
        _set_owner(db_path, run_id, heartbeat_at="2000-01-01T00:00:00+00:00")
        with RunStore(db_path, stale_after=1) as other:
            assert other.recover_interrupted() == []
        assert _status(db_path, run_id) == "running"


def test_other_host_decided_by_heartbeat_age(db_path: Path) -> None:
    stale, fresh = _start_run(db_path), _start_run(db_path)
    old = (datetime.now(UTC) - timedelta(seconds=600)).isoformat()
    _set_owner(db_path, stale, owner_host="elsewhere.example", heartbeat_at=old)
    _set_owner(
        db_path, fresh, owner_host="elsewhere.example", heartbeat_at=datetime.now(UTC).isoformat()
    )
    with RunStore(db_path, stale_after=60) as store:
        pass
    assert _status(db_path, stale) == "interrupted"
    assert _status(db_path, fresh) == "running"
    with RunStore(db_path, stale_after=60, recover=False) as store:
        row = store.get_run_row(stale)
        assert row is not None
        assert "elsewhere.example" in row["error"]
        assert row["finished_at"] == old
        assert len(store.member_responses(stale)) == 4  # kept


def test_dead_pid_on_this_host_is_interrupted(db_path: Path) -> None:
    run_id = _start_run(db_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    _set_owner(db_path, run_id, owner_pid=child.pid)  # heartbeat still fresh: pid decides
    with RunStore(db_path) as store:
        assert store.recover_interrupted() == []  # already done on open
    assert _status(db_path, run_id) == "interrupted"


@pytest.mark.skipif(not LINUX, reason="process start times come from /proc")
def test_reused_pid_is_detected_by_start_time(db_path: Path) -> None:
    run_id = _start_run(db_path)
    token = process_start_token()
    assert token is not None
    boot_id = token.split(":")[1]
    _set_owner(db_path, run_id, owner_pid=os.getpid(), owner_started_at=f"linux:{boot_id}:1")
    RunStore(db_path).close()
    assert _status(db_path, run_id) == "interrupted"


@pytest.mark.skipif(not LINUX, reason="zombie state comes from /proc")
def test_zombie_owner_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        token = process_start_token(child.pid)
        host = "this-host"
        assert owner_is_alive(host, child.pid, token, None, host=host)
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped yet: the pid exists as a zombie until wait().
        assert wait_until(lambda: not owner_is_alive(host, child.pid, token, None, host=host))
    finally:
        child.kill()
        child.wait()
    assert not owner_is_alive(host, child.pid, token, None, host=host)


def test_owner_is_alive_rules() -> None:
    now = datetime.now(UTC)
    fresh, old = now.isoformat(), (now - timedelta(seconds=120)).isoformat()
    me = os.getpid()
    token = process_start_token()
    assert owner_is_alive("h", me, token, old, host="h", now=now)  # this very process
    assert owner_is_alive("other", me, token, fresh, host="h", now=now)
    assert not owner_is_alive("other", me, token, old, host="h", now=now)
    assert not owner_is_alive("other", me, token, None, host="h", now=now)
    # Same host, token from another boot: the heartbeat decides.
    assert owner_is_alive("h", me, "linux:another-boot:1", fresh, host="h", now=now)
    assert owner_is_alive("h", me, None, fresh, host="h", now=now)


# -- concurrency --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _writer(*args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def test_twenty_processes_write_concurrently(tmp_path: Path, db_path: Path) -> None:
    members, iterations, processes = 4, 3, 20
    go = tmp_path / "go"
    ids = [new_id() for _ in range(processes)]
    procs = [
        _writer(
            "run", "--db", str(db_path), "--run-id", run_id, "--members", str(members),
            "--iterations", str(iterations), "--go-file", str(go),
        )
        for run_id in ids
    ]  # fmt: skip
    go.touch()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert "database is locked" not in err
        assert proc.returncode == 0, err
        assert out.strip().startswith("DONE")

    expected = expected_counts(members, iterations)
    assert count(db_path, "runs") == processes
    assert count(db_path, "runs", "status = 'completed'") == processes
    assert count(db_path, "conversations") == processes
    for table in ("member_responses", "arbiter_decisions", "events"):
        assert count(db_path, table) == processes * expected[table], table
        for run_id in ids:
            assert count(db_path, table, "run_id = ?", [run_id]) == expected[table]
    with RunStore(db_path) as store:
        for run_id in ids:
            events = store.get_events(run_id)
            assert [e.kind for e in events] == [
                e.kind
                for e in stored(build_run_events(run_id, members=members, iterations=iterations))
            ]


def test_processes_racing_on_a_fresh_file(tmp_path: Path) -> None:
    """Schema creation and WAL switch-over race when every process opens a new file at once."""
    db = tmp_path / "fresh.db"
    go = tmp_path / "go"
    ids = [new_id() for _ in range(8)]
    procs = [
        _writer(
            "run", "--db", str(db), "--run-id", run_id, "--iterations", "1", "--go-file", str(go)
        )
        for run_id in ids
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "database is locked" not in err
    assert count(db, "runs", "status = 'completed'") == len(ids)
    assert count(db, "schema_migrations") == len(MIGRATIONS)


def test_threads_share_one_store(store: RunStore, db_path: Path) -> None:
    ids = [new_id() for _ in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(ids))

    def work(run_id: str) -> None:
        try:
            barrier.wait()
            store.record_many(build_run_events(run_id, members=3, iterations=2), strict=True)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(run_id,)) for run_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = expected_counts(3, 2)
    assert count(db_path, "runs", "status = 'completed'") == len(ids)
    for table in ("member_responses", "arbiter_decisions", "events"):
        assert count(db_path, table) == len(ids) * expected[table]


# -- crash ---------------------------------------------------------------------------------------


def _read_until(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"writer ended before {prefix!r}: rc={proc.returncode}\n{err}")
        if line.startswith(prefix):
            return line.strip()


def test_killed_writer_is_interrupted_and_live_one_finishes(db_path: Path) -> None:
    victim_id, survivor_id = new_id(), new_id()
    args = ("--db", str(db_path), "--members", "4", "--iterations", "2", "--pause-after", "3")
    victim = _writer("run", "--run-id", victim_id, *args, stdin=subprocess.PIPE)
    survivor = _writer("run", "--run-id", survivor_id, *args, stdin=subprocess.PIPE)
    try:
        assert _read_until(victim, "PAUSED") == f"PAUSED {victim_id}"
        assert _read_until(survivor, "PAUSED") == f"PAUSED {survivor_id}"

        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=60)
        assert victim.returncode == -signal.SIGKILL

        # Any process opening the store recovers the dead writer's run, and only that.
        with RunStore(db_path) as store:
            victim_row = store.get_run_row(victim_id)
            survivor_row = store.get_run_row(survivor_id)
            assert victim_row is not None and survivor_row is not None
            assert victim_row["status"] == "interrupted"
            assert victim_row["finished_at"] is not None
            assert str(victim.pid) in victim_row["error"]
            assert survivor_row["status"] == "running"
            kept = store.member_responses(victim_id)
            assert [(m["model"], m["status"]) for m in kept] == [
                (member_model(i), "done") for i in range(3)
            ]
            assert [e.kind for e in store.get_events(victim_id)] == [
                "run_started", "iteration_started", "member_done", "member_done", "member_done",
            ]  # fmt: skip
            assert store.recover_interrupted() == []

        result = runs.get(victim_id, path=db_path)
        assert result.status == "interrupted"
        assert len(result.iterations[0].members) == 3
        assert (
            json.loads(runs.export(victim_id, path=db_path))["metadata"]["status"] == "interrupted"
        )
        assert "interrupted" in runs.export(victim_id, "markdown", path=db_path)

        assert survivor.stdin is not None
        survivor.stdin.write("go\n")
        survivor.stdin.flush()
        out, err = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, err
        assert f"DONE {survivor_id}" in out
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    expected = expected_counts(4, 2)
    assert _status(db_path, survivor_id) == "completed"
    assert _status(db_path, victim_id) == "interrupted"
    assert (
        count(db_path, "member_responses", "run_id = ?", [survivor_id])
        == expected["member_responses"]
    )
    assert count(db_path, "events", "run_id = ?", [survivor_id]) == expected["events"]
    assert runs.get(survivor_id, path=db_path).status == "completed"


def test_events_round_trip_through_json(store: RunStore) -> None:
    run_id = new_id()
    events = stored(build_run_events(run_id))
    assert store.record_many(events, strict=True) == len(events)
    for original, back in zip(events, store.get_events(run_id), strict=True):
        assert parse_event(original.model_dump_json()) == back
