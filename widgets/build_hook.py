"""hatch-jupyter-builder build function: ``npm ci`` (when needed) and ``npm run build``.

Used by ``[tool.hatch.build.hooks.jupyter-builder]`` in pyproject.toml, so ``pip install``
(editable or not) bundles the widget front end into ``src/consortium_lab/static/``. It runs
only when the bundle is missing or older than its sources; ``npm ci`` (from the committed
package-lock.json) only when ``node_modules`` is missing or older than the lock file.
Set ``HATCH_JUPYTER_BUILDER_SKIP_NPM=1`` to skip it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT.parent / "src" / "consortium_lab" / "static"
SERVED = ROOT.parent / "src" / "consortium_lab" / "jupyter" / "voila" / "templates" / "consortium"
TARGETS = ("widget.js", "widget.css", "chart.js", "chart.css")
SOURCES = ("src", "package.json", "package-lock.json", "build.mjs")


def _newest(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_dir():
            newest = max([newest, *(p.stat().st_mtime for p in path.rglob("*") if p.is_file())])
        elif path.exists():
            newest = max(newest, path.stat().st_mtime)
    return newest


def stale() -> bool:
    targets = [OUT / t for t in TARGETS] + [SERVED / "static" / t for t in TARGETS]
    if not all(t.exists() for t in targets):
        return True
    return _newest([ROOT / s for s in SOURCES]) > min(t.stat().st_mtime for t in targets)


def build(target_name: str, version: str, force: bool = False, **_: object) -> None:
    if os.environ.get("HATCH_JUPYTER_BUILDER_SKIP_NPM") == "1":
        return
    if not force and not stale():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is needed to build the widget front end (widgets/): install Node.js 20+"
        )
    marker = ROOT / "node_modules" / ".package-lock.json"
    lock = ROOT / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True)
    subprocess.run([npm, "run", "build"], cwd=ROOT, check=True)
