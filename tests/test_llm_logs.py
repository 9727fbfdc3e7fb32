"""consortium_lab.gateway.llm_logs: responses land in llm's own log database, visible to ``llm
logs``."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consortium_lab.gateway.llm_logs import llm_logging_on, llm_logs_db_path, log_to_llm

from _store_writer import async_echo_model, echo_model

WRITER = Path(__file__).with_name("_store_writer.py")


@pytest.fixture(autouse=True)
def llm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private llm user dir (and home) for each test; no third-party llm plugins."""
    home = tmp_path / "home"
    user = tmp_path / "llm"
    for name, path in {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "LLM_USER_PATH": user,
        "CONSORTIUM_LAB_HOME": tmp_path / "consortium-lab",
    }.items():
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("LLM_LOAD_PLUGINS", "")
    return user


def llm_cli(*args: str) -> str:
    """Run the real ``llm`` CLI against this test's LLM_USER_PATH."""
    proc = subprocess.run(
        [sys.executable, "-m", "llm", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def logged_json() -> list[dict[str, Any]]:
    return json.loads(llm_cli("logs", "--json", "-n", "0"))


def turn_count(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM turns").fetchone()[0])
    finally:
        conn.close()


def test_logs_db_path_matches_llm_cli(llm_home: Path) -> None:
    assert llm_logs_db_path() == llm_home / "logs.db"
    code = "from llm.cli import logs_db_path; print(logs_db_path())"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == llm_logs_db_path()


def test_sync_and_async_responses_show_in_llm_logs(llm_home: Path) -> None:
    import llm

    response = echo_model().prompt("hello from sync")
    assert response.text() == "echo: hello from sync"
    sync_id = log_to_llm(response)
    assert sync_id == response.id

    async_response = llm.AsyncResponse.fake(
        async_echo_model(), "hello from async", system="be brief", response="echo: async"
    )
    async_id = log_to_llm(async_response)
    assert async_id == async_response.id

    rows = {row["id"]: row for row in logged_json()}
    assert set(rows) == {sync_id, async_id}
    assert rows[sync_id]["prompt"] == "hello from sync"
    assert rows[sync_id]["response"] == "echo: hello from sync"
    assert rows[sync_id]["model"] == "consortium-lab-test-echo"
    assert rows[async_id]["response"] == "echo: async"
    assert rows[async_id]["system"] == "be brief"
    text = llm_cli("logs", "-n", "0")
    assert "hello from sync" in text and "echo: async" in text

    # llm's database stays in its own (rollback-journal) mode.
    conn = sqlite3.connect(llm_home / "logs.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
    finally:
        conn.close()


async def test_awaited_async_response_is_logged() -> None:
    response = async_echo_model().prompt("awaited")
    assert await response.text() == "echo: awaited"
    assert log_to_llm(response) == response.id
    assert [row["id"] for row in logged_json()] == [response.id]


def test_nothing_is_logged_while_logs_are_off(llm_home: Path) -> None:
    llm_cli("logs", "off")
    assert not llm_logging_on()
    response = echo_model().prompt("secret")
    response.text()
    assert log_to_llm(response) is None
    assert not (llm_home / "logs.db").exists() or turn_count(llm_home / "logs.db") == 0

    llm_cli("logs", "on")
    assert llm_logging_on()
    assert log_to_llm(response) == response.id
    assert [row["id"] for row in logged_json()] == [response.id]


def test_logs_off_follows_the_user_dir_of_the_moment(
    llm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other-llm"
    assert llm_logging_on()
    monkeypatch.setenv("LLM_USER_PATH", str(other))
    llm_cli("logs", "off")  # in the other dir only
    assert (other / "logs-off").exists() and not (llm_home / "logs-off").exists()
    assert not llm_logging_on()
    monkeypatch.setenv("LLM_USER_PATH", str(llm_home))
    assert llm_logging_on()
    monkeypatch.setenv("LLM_USER_PATH", str(other))
    assert not llm_logging_on()
    llm_cli("logs", "on")
    assert llm_logging_on()


def test_explicit_path(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "logs.db"
    response = echo_model().prompt("to a chosen file")
    response.text()
    assert log_to_llm(response, path=target) == response.id
    assert turn_count(target) == 1


def test_failures_warn_and_return_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="consortium_lab.gateway.llm_logs")
    not_awaited = async_echo_model().prompt("never awaited")
    assert log_to_llm(not_awaited) is None
    assert log_to_llm("not a response") is None
    response = echo_model().prompt("x")
    response.text()
    (tmp_path / "a-directory").mkdir()
    assert log_to_llm(response, path=tmp_path / "a-directory") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3


def test_concurrent_processes_and_threads_lose_nothing(tmp_path: Path, llm_home: Path) -> None:
    processes, threads, per_thread = 5, 3, 8
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), "llm-log", "--count", str(per_thread),
             "--threads", str(threads), "--tag", f"p{n}", "--go-file", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for n in range(processes)
    ]  # fmt: skip
    go.touch()  # every process starts on the fresh (not yet migrated) database at once
    ids: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "database is locked" not in err
        ids += out.split()
    total = processes * threads * per_thread
    assert len(ids) == len(set(ids)) == total
    assert turn_count(llm_home / "logs.db") == total
    assert {row["id"] for row in logged_json()} == set(ids)


def _all_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, with what is made at write time (a thread's id, the
    times a thread was created and a migration applied) replaced by its order."""
    conn = sqlite3.connect(db)
    try:
        threads = {
            tid: f"thread-{n}"
            for n, (tid,) in enumerate(conn.execute("SELECT id FROM threads ORDER BY id"))
        }
        out = {}
        for (table,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ):
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            rows = []
            for row in cursor:
                values = [threads.get(v, v) if isinstance(v, str) else v for v in row]
                rows.append(
                    tuple(
                        v
                        for name, v in zip(names, values, strict=True)
                        if not (
                            table in ("threads", "_llm_migrations")
                            and name != "id"
                            and name in ("created", "applied_at", "datetime_utc")
                        )
                    )
                )
            out[table] = sorted(rows, key=repr)
        return out
    finally:
        conn.close()


def test_a_batch_writes_the_rows_llm_itself_writes(llm_home: Path, tmp_path: Path) -> None:
    """The batch writer skips llm's per-response migration check; the rows stay llm's own."""
    import llm
    import sqlite_utils

    first = echo_model().prompt("first question")
    first.text()
    second = llm.AsyncResponse.fake(
        async_echo_model(), "second question", system="be brief", response="echo: second"
    )
    third = echo_model().prompt("first question")  # the same prompt again: shared rows
    third.text()
    batch = [first, second, third]

    by_llm = tmp_path / "by-llm.db"
    db = sqlite_utils.Database(by_llm)
    for response in batch:
        response.log_to_db(db)
    db.close()
    ours = tmp_path / "ours.db"
    assert log_to_llm(batch, path=ours) == third.id

    expected, got = _all_rows(by_llm), _all_rows(ours)
    assert sum(len(rows) for rows in got.values()) > 10
    assert got == expected


def _logs_json(db: Path) -> list[dict[str, Any]]:
    """``llm logs --json`` of ``db``, with each thread id (made at write time) replaced by the
    order of its first appearance."""
    entries = json.loads(llm_cli("logs", "--json", "-n", "0", "-d", str(db)))
    threads: dict[str, str] = {}
    for entry in entries:
        cid = entry.get("conversation_id")
        if cid is not None:
            entry["conversation_id"] = threads.setdefault(cid, f"thread-{len(threads)}")
    return entries


def test_llm_logs_shows_a_batch_as_it_shows_llms_own_log(llm_home: Path, tmp_path: Path) -> None:
    """Two batches into one file (the second into a migrated file, through the kept schema
    reads) read back through ``llm logs`` exactly as the same responses logged by llm."""
    import llm
    import sqlite_utils

    def respond(text: str) -> Any:
        response = echo_model().prompt(text)
        response.text()
        return response

    first = [respond("alpha"), respond("beta"), respond("alpha")]
    second = [
        llm.AsyncResponse.fake(async_echo_model(), "gamma", system="be brief", response="echo"),
        respond("delta"),
    ]
    by_llm = tmp_path / "by-llm.db"
    db = sqlite_utils.Database(by_llm)
    for response in [*first, *second]:
        response.log_to_db(db)
    db.close()
    ours = tmp_path / "ours.db"
    assert log_to_llm(first, path=ours) == first[-1].id
    assert log_to_llm(second, path=ours) == second[-1].id

    expected, got = _logs_json(by_llm), _logs_json(ours)
    assert len(got) == 5
    assert got == expected
    assert _all_rows(ours) == _all_rows(by_llm)


def test_kept_schema_reads_are_forgotten_when_the_schema_changes(tmp_path: Path) -> None:
    from consortium_lab.gateway.llm_logs import _batch_database

    conn = sqlite3.connect(tmp_path / "schema.db")
    try:
        db = _batch_database(conn)
        db.execute("CREATE TABLE one (id INTEGER PRIMARY KEY)")
        assert db.table_names() == ["one"]
        assert [c.name for c in db["one"].columns] == ["id"]
        db.execute("ALTER TABLE one ADD COLUMN name TEXT")
        db.execute("create table two (x)")
        assert db.table_names() == ["one", "two"]
        assert [c.name for c in db["one"].columns] == ["id", "name"]
        db.executescript("DROP TABLE two;")
        assert db.table_names() == ["one"]
        assert db["one"].insert({"name": "a"}).last_pk == 1
        assert db.execute("select * from one").fetchall() == [(1, "a")]
    finally:
        conn.close()
