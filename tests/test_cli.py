"""The consortium-lab CLI as a user runs it: subprocesses on a fresh home folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fake_openai import ModelScript
from helpers import BIN, arbiter_reply, cli, member_reply


@pytest.fixture
def models(fake_openai):
    fake_openai.add_model("m1", ModelScript(reply=member_reply("One.", 0.8)))
    fake_openai.add_model("m2", ModelScript(reply=member_reply("Two.", 0.6)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Joint answer.", 0.9)))
    return fake_openai.env()


def test_run_json_is_the_export_shape_and_logged(models):
    out = cli(models, "run", "What?", "-m", "m1", "-m", "m2", "--arbiter", "judge", "--json")
    data = json.loads(out.stdout)
    assert data["synthesis"]["synthesis"] == "Joint answer."
    assert data["metadata"]["models_used"] == ["m1", "m2"]
    run_id = data["metadata"]["run_id"]
    listed = cli(models, "runs", "list", "--json")
    assert run_id in listed.stdout
    shown = cli(models, "runs", "show", run_id)
    assert "Joint answer." in shown.stdout
    exported = json.loads(cli(models, "runs", "export", run_id).stdout)
    assert exported["synthesis"] == data["synthesis"]
    cli(models, "runs", "delete", run_id)
    missing = cli(models, "runs", "show", run_id, check=False)
    assert missing.returncode != 0 and run_id in missing.stderr


def test_run_shows_progress_and_answer(models):
    out = cli(models, "run", "What?", "-m", "m1:2", "--arbiter", "judge")
    assert "Joint answer." in out.stdout
    assert "m1 #1" in out.stderr and "m1 #2" in out.stderr and "confidence 80%" in out.stderr
    assert "synthesis by judge" in out.stderr


def test_run_reads_stdin_and_rejects_bad_input(models):
    out = cli(models, "run", "-m", "m1", "--arbiter", "judge", "--json", input="From stdin?")
    assert json.loads(out.stdout)["original_prompt"] == "From stdin?"
    bad = cli(models, "run", "Q", "-m", "m1", "--threshold", "150", check=False)
    assert bad.returncode != 0 and "confidence_threshold" in bad.stderr and "150" in bad.stderr
    bad = cli(models, "run", "Q", "-m", "nosuch", check=False)
    assert bad.returncode != 0 and "nosuch" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = cli(models, "run", "Q", "--config", "trio", check=False)
    assert "no saved config named 'trio'" in missing.stderr


def test_configs_commands_share_upstream_store(models, tmp_path):
    cli(models, "configs", "save", "duo", "-m", "m1", "-m", "m2", "--arbiter", "judge")
    assert "duo" in cli(models, "configs", "list").stdout
    assert json.loads(cli(models, "configs", "show", "duo").stdout)["models"] == {"m1": 1, "m2": 1}
    # upstream's own CLI sees it
    upstream = subprocess.run(
        [str(BIN / "llm"), "consortium", "list"],
        env=models,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upstream.returncode == 0 and "duo" in upstream.stdout
    out = cli(models, "run", "Q", "--config", "duo", "--json")
    assert json.loads(out.stdout)["metadata"]["arbiter"] == "judge"
    export = tmp_path / "configs.json"
    export.write_text(cli(models, "configs", "export").stdout)
    cli(models, "configs", "remove", "duo")
    assert "duo" not in cli(models, "configs", "list").stdout
    cli(models, "configs", "import", str(export))
    assert "duo" in cli(models, "configs", "list").stdout


def test_demo_runs_offline(models):
    env = {**models, "CONSORTIUM_LAB_DEMO_DELAY": "0"}
    out = cli(env, "demo", "--terminal", "--json")
    data = json.loads(out.stdout)
    assert data["metadata"]["models_used"] == ["demo-analyst", "demo-optimist", "demo-skeptic"]
    assert data["synthesis"]["synthesis"]
    assert "offline demo" in out.stderr.lower()


def test_fresh_home_every_command_and_llm_cli_work(tmp_path):
    """No ~/.config at all: upstream would crash at plugin load without our start-up guard."""
    home = tmp_path / "fresh"
    home.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "LLM_", "CONSORTIUM_LAB"))
    }
    env.update(HOME=str(home), CONSORTIUM_LAB_DEMO_DELAY="0")
    assert not (home / ".config").exists()
    subprocess.run([sys.executable, "-c", "import consortium_lab"], env=env, check=True, timeout=60)
    for args in (
        ["--help"],
        ["models"],
        ["configs", "list"],
        ["runs", "list"],
        ["demo", "--terminal"],
    ):
        cli(env, *args)
    llm = subprocess.run(
        [str(BIN / "llm"), "models"], env=env, capture_output=True, text=True, timeout=60
    )
    assert llm.returncode == 0, llm.stderr
    assert "demo-analyst" in llm.stdout
    # nothing was written outside the fresh home
    assert (home / ".config" / "io.datasette.llm").is_dir()


def test_root_logger_is_restored_after_plugins_load(tmp_path):
    code = (
        "import logging, llm\n"
        "root = logging.getLogger(); root.setLevel(logging.INFO)\n"
        "before = (root.level, list(root.handlers))\n"
        "llm.get_models()\n"
        "import llm_consortium\n"
        "assert (root.level, list(root.handlers)) == before, (root.level, root.handlers)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_run_estimate_is_a_dry_run(models, fake_openai):
    out = cli(models, "run", "What?", "-m", "m1:2", "--arbiter", "judge", "--estimate")
    assert out.stdout.startswith("about 9 calls")  # (2 members + arbiter) x 3 iterations
    assert "cost unknown for: judge, m1" in out.stdout
    data = json.loads(
        cli(
            models, "run", "What?", "-m", "m1", "--estimate", "--json", "--max-iterations", "1"
        ).stdout
    )
    assert data["calls"] == 2
    assert fake_openai.requests == []  # nothing was asked
