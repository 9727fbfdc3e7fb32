"""The public API survives the layered layout: every exported name, the documented modules,
the ``consortium-lab`` command and the ``llm`` plugin entry point.

Internal module paths may move between releases; these may not (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import consortium_lab

PUBLIC_NAMES = [
    "SCHEMA_VERSION",
    "ArbiterParse",
    "ChatWidget",
    "Consortium",
    "ConsortiumConfig",
    "Conversation",
    "Event",
    "Gateway",
    "Limits",
    "Run",
    "RunResult",
    "__version__",
    "configs",
    "connect",
    "parse_arbiter_response",
    "parse_event",
    "parse_member_response",
    "recommend",
    "runs",
]

DOCUMENTED_MODULES = {
    "consortium_lab.configs": [
        "save",
        "list",
        "get",
        "get_saved",
        "remove",
        "clone",
        "export",
        "import_json",
        "check_name",
    ],
    "consortium_lab.runs": [
        "EXPORT_FORMATS",
        "PurgeReport",
        "list",
        "get",
        "export",
        "delete",
        "delete_all",
        "export_all",
        "purge",
        "to_pandas",
    ],
    "consortium_lab.compat": ["ConsortiumOrchestrator", "create_consortium", "to_upstream_dict"],
    "consortium_lab.eval": [
        "EvalReport",
        "ConditionResult",
        "ItemResult",
        "EvalStore",
        "evaluate",
        "evaluate_sync",
        "load_dataset",
        "get_scorer",
        "build_conditions",
        "bootstrap_interval",
        "pareto_front",
    ],
}


def test_all_lists_exactly_the_public_names() -> None:
    assert sorted(consortium_lab.__all__) == sorted(PUBLIC_NAMES)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_each_public_name_imports(name: str) -> None:
    exec(f"from consortium_lab import {name}", {})  # the statement a user writes
    assert getattr(consortium_lab, name) is not None


@pytest.mark.parametrize("module", sorted(DOCUMENTED_MODULES))
def test_documented_modules_keep_their_functions(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in DOCUMENTED_MODULES[module] if not hasattr(loaded, name)]
    assert not missing, f"{module} lost {missing}"


def _entry_point(group: str, name: str) -> importlib.metadata.EntryPoint:
    found = [ep for ep in importlib.metadata.entry_points(group=group) if ep.name == name]
    assert found, f"no {group} entry point named {name!r}: reinstall the package"
    return found[0]


def test_console_script_entry_point_loads_and_runs() -> None:
    assert callable(_entry_point("console_scripts", "consortium-lab").load())
    script = Path(sys.executable).parent / "consortium-lab"  # what pip wrote from the entry point
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: consortium-lab" in done.stdout


def test_llm_plugin_entry_point_registers_the_demo_models() -> None:
    import llm

    plugin = _entry_point("llm", "consortium_lab_demo").load()
    assert plugin.__name__ == "consortium_lab.demo_models"
    ids = {model.model_id for model in llm.get_models()}
    assert {"demo-analyst", "demo-optimist", "demo-skeptic", "demo-arbiter"} <= ids
