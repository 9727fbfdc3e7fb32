"""Chat kernels do not load llm-consortium (and scikit-learn) for plugins they never use, nor
scikit-learn for the recommendation hint until one is asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import stop_process

CHILD = """
import sys
from consortium_lab.apps import voila
from consortium_lab.prompts.templates import template
voila.warm_up()
assert "<" in template("arbiter_prompt.xml")
from consortium_lab import recommend  # the hint's modules, loaded but not asked
from consortium_lab.widget import recommending
print("llm_consortium" in sys.modules, "sklearn" in sys.modules)
"""


def python_prints(code: str, env: dict[str, str]) -> list[str]:
    """What ``code`` prints, split into words, run by a fresh interpreter in ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def loaded(env: dict[str, str]) -> str:
    return " ".join(python_prints(CHILD, env))


def test_chat_kernel_skips_llm_consortium_and_reads_templates_as_files(fake_openai):
    env = fake_openai.env()
    assert loaded(env) == "False False"
    env["CONSORTIUM_LAB_CHAT_PLUGINS"] = "all"
    assert loaded(env) == "True True"


WARM = """
import gc
import sys
from consortium_lab.apps import voila
from consortium_lab.paths import runs_db_path
assert not runs_db_path().exists() and gc.get_freeze_count() == 0
voila.warm_up()
print(runs_db_path().exists(), all(m in sys.modules for m in voila.FIRST_RUN_MODULES))
print(gc.get_freeze_count() > 100_000)  # the start-up heap, out of full collections
print("altair" in sys.modules)  # the chart specs come from the disk cache or a child process
"""


def test_warm_up_opens_the_run_log_imports_what_a_first_run_needs_and_freezes(fake_openai):
    assert python_prints(WARM, fake_openai.env()) == ["True", "True", "True", "False"]


DASHBOARD = """
import gc
import sys
from consortium_lab.apps import voila
later = ("ipywidgets", "consortium_lab.analysis.dashboard", "consortium_lab.widget.vega")
assert not any(m in sys.modules for m in later)  # voila's own import leaves them to warm-up
voila.warm_up_dashboard()
print(all(m in sys.modules for m in voila.DASHBOARD_MODULES), "altair" in sys.modules)
print(gc.get_freeze_count())  # the dashboard kernel streams nothing: its heap stays unfrozen
"""


def test_warm_up_dashboard_imports_what_the_dashboard_needs_and_does_not_freeze(fake_openai):
    assert python_prints(DASHBOARD, fake_openai.env()) == ["True", "True", "0"]


def gateway_maps(env: dict[str, str], config: Path) -> str:
    """The shared objects a running ``consortium-lab gateway`` process has loaded."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "consortium-lab"), "gateway", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on " in line:
                break
        else:
            raise AssertionError(f"the gateway did not start: {proc.stderr.read()}")  # type: ignore[union-attr]
        return Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        stop_process(proc)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
def test_gateway_service_skips_llm_consortium_and_scikit_learn(fake_openai, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {"ledger": str(tmp_path / "ledger.db"), "port": 0, "models": ["gpt-4o-mini"]}
        )
    )
    env = fake_openai.env()
    assert "sklearn" not in gateway_maps(env, config)
    env["CONSORTIUM_LAB_GATEWAY_PLUGINS"] = "all"
    assert "sklearn" in gateway_maps(env, config)


LEAN = """
import sys
import consortium_lab
from consortium_lab.sinks.runlog.store import RunStore
from consortium_lab.engine.events import RunStarted
store = RunStore(sys.argv[1])
store.record(RunStarted(run_id="r1", prompt="Q", config={}))
hidden = "pandas" not in sys.modules and "numpy" not in sys.modules
import pandas  # still importable by whoever needs it
print(hidden, len(store.list_runs()))
"""


def test_chat_kernels_import_sqlite_utils_without_pandas(fake_openai, tmp_path):
    env = fake_openai.env()
    cmd = [sys.executable, "-c", LEAN, str(tmp_path / "runs.db")]

    def run(env: dict[str, str]) -> str:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    env.pop("CONSORTIUM_LAB_CHAT_KERNEL", None)
    assert run(env) == "False 1"
    env["CONSORTIUM_LAB_CHAT_KERNEL"] = "1"
    assert run(env) == "True 1"
    # The Voila launcher marks its kernels.
    from consortium_lab.apps.voila import voila_env

    assert voila_env({})["CONSORTIUM_LAB_CHAT_KERNEL"] == "1"
