"""The live charts' specs: built once per code version, kept on disk, altair kept out of a
chat kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from consortium_lab.widget import chart_specs as module
from consortium_lab.widget.chart_specs import build_specs, chart_specs


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """No spec in this process's memory; a data folder of the test's own."""
    monkeypatch.setattr(module, "_memo", {})
    monkeypatch.setenv("CONSORTIUM_LAB_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def children(monkeypatch) -> list[list[str]]:
    """altair hidden from this process (as in a chat kernel), and every child process the
    specs are built in, recorded."""
    monkeypatch.setattr(module, "_altair_loaded", lambda: False)
    calls: list[list[str]] = []
    real = subprocess.run

    def spy(args: list[str], **kwargs: Any) -> Any:
        calls.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(module.subprocess, "run", spy)
    return calls


def test_specs_are_handed_out_as_copies(fresh):
    first = chart_specs([0.8, 0.5])
    assert set(first["confidence"]) == {"0.8", "0.5"}
    first["confidence"]["0.8"]["changed"] = True
    assert "changed" not in chart_specs()["confidence"]["0.8"]
    assert chart_specs() == chart_specs((0.8,))


def test_specs_are_built_in_a_child_then_read_from_disk(fresh, children, monkeypatch):
    expected = build_specs(["0.5", "0.8"])
    assert chart_specs([0.8, 0.5]) == expected
    assert len(children) == 1 and children[0][1:3] == ["-m", module.__name__]

    monkeypatch.setattr(module, "_memo", {})  # a new kernel on the same data folder
    assert chart_specs([0.5]) == {**expected, "confidence": {"0.5": expected["confidence"]["0.5"]}}
    assert len(children) == 1, "the specs were built again although they were on disk"

    chart_specs([0.9])  # a threshold not built yet: that chart alone is built
    assert len(children) == 2 and children[1][3:] == ["0.9"]


def test_a_change_to_the_code_that_builds_them_builds_them_again(fresh, children, monkeypatch):
    chart_specs()
    monkeypatch.setattr(module, "_memo", {})
    monkeypatch.setattr(module, "fingerprint", lambda: "another-version")
    chart_specs()
    assert len(children) == 2


def test_the_fingerprint_follows_the_source_and_altair(monkeypatch):
    import importlib.metadata

    module.fingerprint.cache_clear()
    first = module.fingerprint()
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "0.0" if name == "altair" else real(name)
    )
    module.fingerprint.cache_clear()
    assert module.fingerprint() != first
    monkeypatch.undo()
    module.fingerprint.cache_clear()
    assert module.fingerprint() == first


@pytest.mark.parametrize("executable", ["/bin/false", "/nonexistent/python", "/bin/true"])
def test_a_failing_child_process_builds_them_here(fresh, children, monkeypatch, caplog, executable):
    """A child that fails, cannot start or prints no JSON: the specs are built here."""
    monkeypatch.setattr(module.sys, "executable", executable)
    assert chart_specs() == build_specs(["0.8"])
    assert len(children) == 1
    assert "building them here" in caplog.text


def test_an_unwritable_data_folder_costs_only_the_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(module, "_memo", {})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CONSORTIUM_LAB_HOME", str(blocker / "home"))
    assert chart_specs() == build_specs(["0.8"])
    assert "not cached" in caplog.text


def test_a_fresh_process_gets_its_specs_without_importing_altair(tmp_path):
    """What a chat kernel does: the first process builds them in a child, the second reads
    them from disk; neither imports altair."""
    code = (
        "import json, sys\n"
        "from consortium_lab.widget.chart_specs import chart_specs\n"
        "specs = chart_specs([0.8])\n"
        "print(json.dumps({'altair': 'altair' in sys.modules, 'specs': specs}))\n"
    )
    env = {**os.environ, "CONSORTIUM_LAB_HOME": str(tmp_path / "home")}
    expected = build_specs(["0.8"])
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out == {"altair": False, "specs": expected}
    assert any((tmp_path / "home" / "chart-specs").iterdir())


def test_the_child_s_command_line_asks_for_keys():
    assert module.main([]) == 2


def test_a_damaged_cache_costs_only_the_cache(fresh, caplog):
    folder = fresh / "home" / "chart-specs"
    folder.mkdir(parents=True)
    (folder / "cache.db").write_bytes(b"not a database" * 100)
    assert chart_specs() == build_specs(["0.8"])
    assert "cache" in caplog.text
