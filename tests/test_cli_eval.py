"""``consortium-lab eval`` as a user runs it: subprocesses on a fresh home folder, models on
the loopback server (scripted per prompt, see test_eval.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from test_eval import ITEMS, item_of, replying

from fake_openai import Fault
from helpers import BIN, cli, stop_process


@pytest.fixture
def setup(fake_openai: Any, tmp_path: Path) -> tuple[Any, dict[str, str], Path]:
    fake_openai.add_model("m-good", replying(set(range(10))))
    fake_openai.add_model("m-half", replying({0, 2, 4, 6, 8}))
    fake_openai.add_model("m-arb", replying(set(range(8)), arbiter=True))
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ITEMS) + "\n")
    env = fake_openai.env()
    env["CONSORTIUM_LAB_DB"] = str(tmp_path / "runs.db")
    return fake_openai, env, data


def test_json_contract_list_show_compare_and_runs_tag(setup: Any, tmp_path: Path) -> None:
    _server, env, data = setup
    common = ["-m", "m-good", "-m", "m-half", "--arbiter", "m-arb", "--scorer", "numeric"]
    out = cli(env, "eval", str(data), *common, "--modes", "members,consortium", "--json")
    report = json.loads(out.stdout)  # one JSON object, nothing else on standard output
    assert set(report) >= {"conditions", "items", "id", "tag"}
    by_name = {c["name"]: c for c in report["conditions"]}
    assert list(by_name) == ["member:m-good", "member:m-half", "consortium"]
    for c in by_name.values():
        assert set(c) >= {
            "name",
            "correct",
            "n",
            "accuracy",
            "ci_low",
            "ci_high",
            "latency_mean",
            "latency_p95",
            "tokens",
            "cost",
        }
    assert (by_name["member:m-half"]["correct"], by_name["member:m-half"]["n"]) == (5, 10)
    assert by_name["consortium"]["accuracy"] == 0.8
    assert by_name["member:m-half"]["ci_low"] < 0.5 < by_name["member:m-half"]["ci_high"]
    assert len(report["items"]) == 30
    first = report["items"][0]
    assert set(first) >= {"item_id", "condition", "answer", "correct"}

    # A second evaluation, with a table and a progress line instead of JSON.
    html = tmp_path / "report.html"
    table = cli(
        env, "eval", str(data), *common, "--modes", "members", "--limit", "4", "--html", str(html)
    )
    assert "member:m-half" in table.stdout and "2/4" in table.stdout
    assert "member:m-good 4/4 | member:m-half 4/4" in table.stderr and "ETA" in table.stderr
    page = html.read_text()
    assert 'id="cl-chart-module"' in page and "Pareto front" in page and "cdn" not in page

    listed = json.loads(cli(env, "eval", "list", "--json").stdout)
    assert [e["answered"] for e in listed] == [8, 30]
    assert all(e["status"] == "completed" for e in listed)
    second = listed[0]["id"]
    shown = json.loads(cli(env, "eval", "show", report["id"], "--json").stdout)
    assert shown["conditions"] == report["conditions"]
    compared = json.loads(cli(env, "eval", "compare", report["id"], second, "--json").stdout)
    rows = {r["condition"]: r["evaluations"] for r in compared["conditions"]}
    assert rows["member:m-half"][second]["accuracy"] == 0.5
    assert rows["consortium"][second] is None
    assert "consortium" in cli(env, "eval", "compare", report["id"], second).stdout

    tagged = json.loads(
        cli(env, "runs", "list", "--tag", report["tag"], "-n", "100", "--json").stdout
    )
    assert {r["id"] for r in tagged} == {i["run_id"] for i in report["items"]}
    missing = cli(env, "eval", "show", "nope", check=False)
    assert missing.returncode == 1 and "no evaluation 'nope'" in missing.stderr


def test_bad_dataset_refused_or_skipped(setup: Any, tmp_path: Path) -> None:
    server, env, _ = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ITEMS[0]) + "\n{oops\n" + json.dumps(ITEMS[0]) + "\n")
    refused = cli(env, "eval", str(bad), "-m", "m-good", "--modes", "members", check=False)
    assert refused.returncode == 1
    assert "line 2: unreadable line" in refused.stderr
    assert "line 3: duplicate id 'q0'" in refused.stderr
    assert server.requests == []
    skipped = cli(
        env, "eval", str(bad), "-m", "m-good", "--modes", "members", "--skip-bad", "--json"
    )
    assert "Skipped 2 bad row(s)" in skipped.stderr
    report = json.loads(skipped.stdout)
    assert report["skipped"] == 2 and report["conditions"][0]["n"] == 1


def _results(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=60)
    try:
        return conn.execute("SELECT evaluation_id, item_id FROM eval_results").fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


@pytest.mark.timeout(400)
def test_a_killed_evaluation_resumes_without_asking_again(setup: Any, tmp_path: Path) -> None:
    server, env, data = setup
    db = tmp_path / "runs.db"
    script = server.script("m-good")
    answer = script.reply
    answered = []

    def reply(body: dict[str, Any]) -> str:
        # After the 4th answer the model hangs: the 5th item is in flight when it is killed.
        answered.append(body)
        if len(answered) == 4:
            script.fail_always = Fault.hang(forever=True)
        return answer(body)

    script.reply = reply
    args = [
        "eval",
        str(data),
        "-m",
        "m-good",
        "--modes",
        "members",
        "--scorer",
        "numeric",
        "--concurrency",
        "1",
        "--json",
    ]
    process = subprocess.Popen(
        [str(BIN / "consortium-lab"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server.wait_for(lambda: server.active_for("m-good") > 0 and len(answered) == 4, timeout=300)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(60)
    finally:
        stop_process(process)
    script.fail_always = None
    scored = _results(db)
    assert len(scored) == 4
    eval_id = scored[0][0]
    listed = json.loads(cli(env, "eval", "list", "--json").stdout)
    assert listed[0]["status"] == "interrupted"
    asked_before = len(server.requests_for("m-good"))
    done_items = {item for _, item in scored}

    resumed = cli(env, *args, "--resume", eval_id)
    report = json.loads(resumed.stdout)
    assert report["id"] == eval_id and report["status"] == "completed"
    assert report["conditions"][0]["correct"] == report["conditions"][0]["n"] == 10
    again = server.requests_for("m-good")[asked_before:]
    asked_items = {f"q{item_of(r.json)}" for r in again}
    assert asked_items == {i["id"] for i in ITEMS} - done_items
    assert len(again) == 10 - len(done_items)
