"""Run-log retention beside the chat: the chat server's purge at start and every 6 hours
(a real Voila server started by its command line), and root's ``purge --all-homes`` over real
homes' files."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from consortium_lab import runs
from consortium_lab.apps import voila as app
from consortium_lab.apps.cli import main
from consortium_lab.apps.retention import PURGE_EVERY_S, RetentionLoop
from consortium_lab.gateway.llm_logs import llm_logs_db_path
from consortium_lab.paths import runs_db_path
from consortium_lab.runs import purge_by_retention
from test_purge import NEW, OLD, holds, two_runs


def wait_for(condition, what: str, timeout: float = 180.0) -> None:
    """Poll ``condition`` until true; generous, for a loaded machine."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def ids() -> set[str]:
    return {r["id"] for r in runs.list()}


async def test_the_loop_purges_at_start_and_again_after_a_failure(trio, monkeypatch):
    old, new = await two_runs()
    assert PURGE_EVERY_S == 6 * 3600
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "30")
    calls: list[str] = []

    def purge():
        calls.append("purge")
        if len(calls) == 1:
            raise ValueError("a locked file, say")
        return purge_by_retention()

    loop = RetentionLoop(purge, every=0.01).start()
    try:
        with loop.turned:
            assert loop.turned.wait_for(lambda: loop.turns >= 2, timeout=180)
    finally:
        loop.stop(timeout=60)
    assert ids() == {new} and old not in ids()
    assert not holds(runs_db_path(), OLD) and holds(runs_db_path(), NEW)


def test_no_retention_set_purges_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("CONSORTIUM_LAB_RETENTION_DAYS", raising=False)
    assert purge_by_retention() is None
    monkeypatch.setenv("CONSORTIUM_LAB_RETENTION_DAYS", "7")
    assert purge_by_retention() is None  # no run log yet: nothing created either
    assert not runs_db_path().exists()


def test_a_loop_needs_a_positive_interval():
    with pytest.raises(ValueError, match="every: a positive number"):
        RetentionLoop(every=0)


async def test_the_chat_server_purges_at_start(trio, tmp_path):
    old, new = await two_runs()
    env = trio.env()
    env["CONSORTIUM_LAB_RETENTION_DAYS"] = "30"
    assert app.voila_command(8899)[1:3] == ["-m", "consortium_lab.apps.voila_server"]
    with (
        (tmp_path / "voila.log").open("w") as log,
        app.running(env=env, preheat=False, log=log, timeout=180),
    ):
        wait_for(lambda: old not in ids(), "the server's first purge")
    assert ids() == {new}


# -- consortium-lab purge --all-homes --------------------------------------------------------


def copy_db(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def make_home(base: Path, name: str) -> Path:
    home = base / name
    copy_db(runs_db_path(), home / ".local/share/consortium-lab/runs.db")
    copy_db(llm_logs_db_path(), home / ".config/io.datasette.llm/logs.db")
    return home


async def test_all_homes_purges_every_home_and_reports_a_broken_one(trio, tmp_path):
    old, new = await two_runs()
    base = tmp_path / "homes"
    alice, bob = make_home(base, "cl-alice"), make_home(base, "cl-bob")
    (base / "cl-carol").mkdir()  # never started a server: no run log
    broken = base / "cl-dave" / ".local/share/consortium-lab/runs.db"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a run log")
    runner = CliRunner()
    args = ["purge", "--all-homes", "--home-base", str(base), "--older-than", "30"]

    dry = runner.invoke(main, [*args, "--dry-run"])
    assert "cl-alice: would delete 1 runs, 3 llm log responses" in dry.output
    assert holds(alice / ".local/share/consortium-lab/runs.db", OLD)

    done = runner.invoke(main, args)
    assert done.exit_code == 1, done.output
    assert "3 run logs under" in done.output and "1 failed" in done.output
    assert f"{base / 'cl-dave'}: failed:" in done.output and "not a run log" in done.output
    for home in (alice, bob):
        log = home / ".local/share/consortium-lab/runs.db"
        llm = home / ".config/io.datasette.llm/logs.db"
        assert f"{home}: deleted 1 runs, 3 llm log responses" in done.output
        assert [r["id"] for r in runs.list(path=log)] == [new]
        assert not holds(log, OLD) and holds(log, NEW)
        assert not holds(llm, OLD) and holds(llm, NEW)
    assert broken.read_text() == "not a run log"
    # The user's own files were not touched.
    assert ids() == {old, new}


def test_all_homes_refuses_db_and_a_missing_base(tmp_path):
    runner = CliRunner()
    with_db = runner.invoke(main, ["purge", "--all-homes", "--db", str(tmp_path / "x.db"), "--all"])
    assert with_db.exit_code == 1 and "leave out --db" in with_db.output
    missing = runner.invoke(
        main, ["purge", "--all-homes", "--home-base", str(tmp_path / "no"), "--all"]
    )
    assert missing.exit_code == 1 and "no such folder of homes" in missing.output


# -- the user's own choice ---------------------------------------------------------------------


def test_a_choice_is_stored_read_and_removed_and_bad_ones_are_refused(tmp_path):
    from consortium_lab.sinks.runlog import chosen_retention_days, set_retention_days

    assert chosen_retention_days(tmp_path) is None
    assert set_retention_days(14, tmp_path) == 14
    assert chosen_retention_days(tmp_path) == 14
    for bad in (0, -1, True, "x", 1.5):
        with pytest.raises(ValueError):
            set_retention_days(bad, tmp_path)  # type: ignore[arg-type]
    assert chosen_retention_days(tmp_path) == 14
    assert set_retention_days(None, tmp_path) is None
    assert not (tmp_path / "retention.json").exists()
    (tmp_path / "retention.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"retention.json: expected"):
        chosen_retention_days(tmp_path)


async def test_the_server_purge_honours_the_users_choice_without_an_operator_maximum(
    trio, monkeypatch
):
    from consortium_lab.sinks.runlog import set_retention_days

    _old, new = await two_runs()
    monkeypatch.delenv("CONSORTIUM_LAB_RETENTION_DAYS", raising=False)
    assert purge_by_retention() is None
    set_retention_days(30)
    report = purge_by_retention()
    assert report is not None and report.runs == 1
    assert ids() == {new}


async def test_all_homes_retention_reads_each_homes_choice(trio, tmp_path, monkeypatch):
    from consortium_lab.sinks.runlog import set_retention_days

    _old, new = await two_runs()
    monkeypatch.delenv("CONSORTIUM_LAB_RETENTION_DAYS", raising=False)
    base = tmp_path / "homes"
    alice, bob = make_home(base, "cl-alice"), make_home(base, "cl-bob")
    set_retention_days(30, alice / ".local/share/consortium-lab")
    done = CliRunner().invoke(
        main, ["purge", "--all-homes", "--home-base", str(base), "--retention"]
    )
    assert done.exit_code == 0, done.output
    assert f"{alice}: deleted 1 runs" in done.output
    assert f"{bob}: no retention set; nothing purged" in done.output
    assert [r["id"] for r in runs.list(path=alice / ".local/share/consortium-lab/runs.db")] == [new]
    assert len(runs.list(path=bob / ".local/share/consortium-lab/runs.db")) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
async def test_all_homes_as_root_leaves_every_file_to_the_homes_owner(trio, tmp_path):
    _old, new = await two_runs()
    base = tmp_path / "homes"
    alice = make_home(base, "cl-alice")
    uid = gid = 54321  # no such user needed: only the numbers are compared
    for path in [alice, *alice.rglob("*")]:
        os.chown(path, uid, gid)
    done = CliRunner().invoke(
        main, ["purge", "--all-homes", "--home-base", str(base), "--older-than", "30"]
    )
    assert done.exit_code == 0, done.output
    assert f"{alice}: deleted 1 runs" in done.output
    files = [p for p in alice.rglob("*") if p.is_file()]
    assert files
    assert [(p, p.stat().st_uid, p.stat().st_gid) for p in files] == [(p, uid, gid) for p in files]
    assert [r["id"] for r in runs.list(path=alice / ".local/share/consortium-lab/runs.db")] == [new]
