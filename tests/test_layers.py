"""The package's layers: imports only go down (see docs/architecture.md).

Every import in every module counts, the ones inside functions and under ``TYPE_CHECKING``
included: a lazy import up the layers is still a dependency up the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import consortium_lab

PACKAGE = Path(consortium_lab.__file__).parent

# Bottom to top. A module may import from its own layer and the layers below it.
LAYERS: dict[str, int] = {
    "paths": 0,
    "demo_models": 0,
    "config": 1,
    "configs": 1,
    "prompts": 2,
    "gateway": 3,
    "engine": 4,
    "sinks": 5,
    "runs": 5,
    "sqlite": 0,
    "analysis": 6,
    # Reads the run log (sinks) and the agreement measures (analysis); the widget asks it.
    "recommender": 6,
    "eval": 6,
    "widget": 7,
    "service": 8,
    "apps": 9,
    "compat": 9,
    "__init__": 10,
}


def layer_of(dotted: str) -> str:
    """``consortium_lab.gateway.core`` -> ``gateway``; the package itself -> ``__init__``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every ``consortium_lab`` module that ``path`` imports, with its line number."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "consortium_lab" or node.module is None:
                # `from consortium_lab import configs`, `from . import catalog`: submodules.
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return [(line, m) for line, m in found if m.split(".")[0] == "consortium_lab"]


def test_every_top_level_name_has_a_layer() -> None:
    names = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()
    }
    assert names <= set(LAYERS), f"give these a layer in LAYERS: {sorted(names - set(LAYERS))}"


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        for line, target in imported_modules(path):
            if LAYERS[layer_of(target)] > LAYERS[layer_of(here)]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {here} -> {target}")
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from consortium_lab.engine.events import Usage\n", "consortium_lab.engine.events"),
        ("from . import catalog\n", "consortium_lab.config.catalog"),
        ("def f():\n    from ..engine import result\n", "consortium_lab.engine"),
    ],
)
def test_the_walker_sees_every_kind_of_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    # A check that cannot fail proves nothing: the walker must find each import form.
    fake_package = tmp_path / "consortium_lab"
    (fake_package / "config").mkdir(parents=True)
    module = fake_package / "config" / "probe.py"
    module.write_text(source)
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake_package)
    assert expected in [m for _, m in imported_modules(module)]
