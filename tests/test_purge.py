"""Run-log retention: ``runs.purge`` and ``consortium-lab purge`` on real SQLite files, with
runs made by the engine against the loopback model server and logged to llm's own log."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from consortium_lab import Consortium, runs
from consortium_lab.apps.cli import main
from consortium_lab.gateway.llm_log_writer import flush_all
from consortium_lab.gateway.llm_logs import llm_logs_db_path
from consortium_lab.paths import runs_db_path
from consortium_lab.sinks.runlog import NotARunLogError, effective_retention_days, parse_days

OLD = "purge-marker-old-7f3a"
NEW = "purge-marker-new-9c1e"


def sql(path: Path, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def age(run_id: str, days: int) -> None:
    """Make ``run_id`` look ``days`` days old (its start time is what retention reads)."""
    started = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    sql(runs_db_path(), "UPDATE runs SET started_at = ? WHERE id = ?", (started, run_id))


def files_of(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


def holds(path: Path, marker: str) -> bool:
    """Whether any byte of the database or its WAL/journal holds ``marker``."""
    return any(marker.encode() in p.read_bytes() for p in files_of(path))


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(files_of(path)):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def llm_ids(run_id: str) -> set[str]:
    rows = sql(
        runs_db_path(),
        "SELECT response_id FROM member_responses WHERE run_id = ? AND response_id IS NOT NULL"
        " UNION SELECT response_id FROM arbiter_decisions WHERE run_id = ?"
        " AND response_id IS NOT NULL",
        (run_id, run_id),
    )
    return {str(r[0]) for r in rows}


def llm_rows(ids: set[str]) -> int:
    """How many of ``ids`` llm's log holds (llm 0.36 keeps a response as a ``turns`` row)."""
    marks = ",".join("?" * len(ids))
    query = f"SELECT count(*) FROM turns WHERE id IN ({marks})"
    return int(sql(llm_logs_db_path(), query, tuple(ids))[0][0])


async def two_runs() -> tuple[str, str]:
    consortium = Consortium(models=["a", "b"], arbiter="judge")
    old = await consortium.run(f"Question {OLD}?")
    new = await consortium.run(f"Question {NEW}?")
    age(old.run_id, 40)
    age(new.run_id, 2)
    flush_all()  # llm's log is written in batches; the assertions read it
    return old.run_id, new.run_id


async def test_old_runs_are_gone_from_every_file_and_new_ones_stay(trio):
    old, new = await two_runs()
    old_llm, new_llm = llm_ids(old), llm_ids(new)
    assert len(old_llm) == 3 and llm_rows(old_llm) == 3  # two members and the arbiter
    assert holds(runs_db_path(), OLD) and holds(llm_logs_db_path(), OLD)

    before = digest(runs_db_path()), digest(llm_logs_db_path())
    report = runs.purge(30, dry_run=True)
    assert (report.runs, report.conversations, report.llm_responses) == (1, 1, 3)
    assert (digest(runs_db_path()), digest(llm_logs_db_path())) == before

    report = runs.purge(30)
    assert (report.runs, report.conversations, report.llm_responses) == (1, 1, 3)
    assert [r["id"] for r in runs.list()] == [new]
    with pytest.raises(KeyError):
        runs.get(old)
    assert runs.get(new).synthesis is not None
    assert llm_rows(old_llm) == 0 and llm_rows(new_llm) == len(new_llm) == 3
    # The text is gone from the bytes of both databases and their WAL/journal files.
    assert not holds(runs_db_path(), OLD) and not holds(llm_logs_db_path(), OLD)
    assert holds(runs_db_path(), NEW) and holds(llm_logs_db_path(), NEW)
    # llm's full-text search still works for what is left.
    hits = sql(
        llm_logs_db_path(),
        "SELECT count(*) FROM turn_search_fts WHERE turn_search_fts MATCH ?",
        (f'"{NEW}"',),
    )
    assert hits[0][0] >= 1


async def test_a_response_a_kept_run_reused_stays_in_llm_log(trio):
    old, new = await two_runs()
    shared = sorted(llm_ids(old))[0]
    # A cache hit records the original response's id: the kept run now points at it too.
    sql(
        runs_db_path(),
        "UPDATE member_responses SET response_id = ? WHERE run_id = ? AND model = 'a'",
        (shared, new),
    )
    report = runs.purge(30)
    assert report.runs == 1 and report.llm_responses == 2
    assert llm_rows({shared}) == 1


async def test_all_keeps_a_running_run_and_a_kept_llm_log(trio):
    _old, new = await two_runs()
    sql(runs_db_path(), "UPDATE runs SET status = 'running' WHERE id = ?", (new,))
    report = runs.purge(all=True, llm_log=False)
    assert report.runs == 1 and report.llm_responses == 0
    assert [r["id"] for r in runs.list()] == [new]
    assert llm_rows(llm_ids(new)) == 3 and holds(llm_logs_db_path(), OLD)


async def test_all_takes_a_run_whose_process_died(trio):
    """A run cut off by a crash is still marked running in the file; "all" must not keep it."""
    old, _new = await two_runs()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone: the run's owner died
    sql(
        runs_db_path(),
        "UPDATE runs SET status = 'running', owner_pid = ? WHERE id = ?",
        (child.pid, old),
    )
    report = runs.purge(all=True, llm_log=False)
    assert report.runs == 2
    assert runs.list() == []
    assert not holds(runs_db_path(), OLD)


async def test_cli_purges_and_dry_runs(trio):
    _old, new = await two_runs()
    runner = CliRunner()
    dry = runner.invoke(main, ["purge", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Would delete 1 runs, 1 conversations and 3 llm log responses" in dry.output
    assert len(runs.list()) == 2
    done = runner.invoke(main, ["purge", "--older-than", "30"])
    assert done.exit_code == 0, done.output
    assert "Deleted 1 runs" in done.output and "File size" in done.output
    assert [r["id"] for r in runs.list()] == [new]


def test_retention_at_a_first_start_is_a_quiet_no_op(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "30")
    missing = tmp_path / "none" / "runs.db"
    result = CliRunner().invoke(main, ["purge", "--retention", "--db", str(missing)])
    assert result.exit_code == 0, result.output
    assert "nothing purged" in result.output and not missing.exists()


async def test_cli_retention_reads_the_operator_setting(trio, monkeypatch):
    _old, _new = await two_runs()
    runner = CliRunner()
    unset = runner.invoke(main, ["purge", "--retention"])
    assert unset.exit_code == 0 and "nothing purged" in unset.output
    assert len(runs.list()) == 2
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "1")
    done = runner.invoke(main, ["purge", "--retention"])
    assert done.exit_code == 0, done.output
    assert runs.list() == []


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("0", "--older-than must be at least 1 day, got 0"),
        ("-3", "--older-than must be at least 1 day, got -3"),
        ("1.5", "--older-than must be a whole number of days, got '1.5'"),
        ("soon", "--older-than must be a whole number of days, got 'soon'"),
    ],
)
async def test_bad_days_are_one_line_and_delete_nothing(trio, days, message):
    await two_runs()
    before = digest(runs_db_path())
    result = CliRunner().invoke(main, ["purge", "--older-than", days])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {message}"
    assert digest(runs_db_path()) == before


def test_a_file_that_is_not_a_run_log_is_refused_untouched(tmp_path):
    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE runs (id TEXT)")
    sql(other, "INSERT INTO runs VALUES ('keep me')")
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but long enough to be read as a header" * 4)
    missing = tmp_path / "missing.db"
    runner = CliRunner()
    for path, why in (
        (other, "not a run log (no arbiter_decisions, events, member_responses,"),
        (text, "not a run log (file is not a database)"),
        (missing, "no such run log"),
    ):
        before = path.read_bytes() if path.exists() else None
        result = runner.invoke(main, ["purge", "--db", str(path), "--all"])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"Error: {path}: {why}")
        assert len(result.output.strip().splitlines()) == 1
        assert (path.read_bytes() if path.exists() else None) == before
    assert not missing.exists()
    with pytest.raises(NotARunLogError):
        runs.purge(all=True, path=other)


def test_cli_needs_exactly_one_choice(tmp_path):
    result = CliRunner().invoke(main, ["purge", "--all", "--older-than", "3"])
    assert result.exit_code == 1
    assert "give exactly one of --older-than DAYS, --all, --retention" in result.output


def test_the_smaller_retention_wins(monkeypatch):
    monkeypatch.delenv("CONSORTIUM_LAB_RETENTION_DAYS", raising=False)
    assert effective_retention_days() is None
    assert effective_retention_days(14) == 14
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "30")
    assert effective_retention_days() == 30
    assert effective_retention_days(7) == 7
    assert effective_retention_days(90) == 30
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="CONSORTIUM_LAB_RETENTION_DAYS must be at least 1"):
        effective_retention_days()
    assert parse_days(" 5 ") == 5


async def test_rows_in_llms_older_responses_table_go_too(trio):
    """Logs written by llm before 0.36 keep a response as a ``responses`` row (with its
    full-text index and tables naming it by ``response_id``); llm 0.36 keeps that table."""
    old, _new = await two_runs()
    legacy = "purge-marker-legacy-51d0"
    rid = sorted(llm_ids(old))[0]
    sql(llm_logs_db_path(), "INSERT INTO conversations (id, name) VALUES ('c1', ?)", (legacy,))
    sql(
        llm_logs_db_path(),
        "INSERT INTO responses (id, model, prompt, response, conversation_id)"
        " VALUES (?, 'a', ?, 'old answer', 'c1')",
        (rid, legacy),
    )
    sql(llm_logs_db_path(), "INSERT INTO tool_calls (response_id, name) VALUES (?, 't')", (rid,))
    assert holds(llm_logs_db_path(), legacy)
    report = runs.purge(30)
    assert report.llm_responses == 4  # three turns and the legacy row
    assert not holds(llm_logs_db_path(), legacy)
    assert sql(llm_logs_db_path(), "SELECT count(*) FROM tool_calls")[0][0] == 0
    assert sql(llm_logs_db_path(), "SELECT count(*) FROM conversations")[0][0] == 0


async def test_download_and_delete_all_my_data(trio, tmp_path):
    from consortium_lab import configs

    old, new = await two_runs()
    store = tmp_path / "configs.db"
    configs.save("mine", {"models": ["a", "b"], "arbiter": "judge"}, path=store)
    everything = runs.export_all(configs_path=store)
    assert {r["metadata"]["run_id"] for r in everything["runs"]} == {old, new}
    assert OLD in json.dumps(everything) and NEW in json.dumps(everything)
    assert set(everything["configs"]) == {"mine"}
    json.dumps(everything)  # one JSON file

    report = runs.delete_all(configs_path=store)
    assert report.runs == 2 and report.llm_responses == 6
    assert runs.list() == [] and configs.list(path=store) == []
    for marker in (OLD, NEW):
        assert not holds(runs_db_path(), marker) and not holds(llm_logs_db_path(), marker)
    assert runs.export_all(configs_path=store)["runs"] == []
