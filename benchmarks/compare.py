"""Run the benchmarks against this checkout and an earlier commit, side by side, in one run.

    .venv/bin/python benchmarks/compare.py                 # against HEAD~1, every benchmark
    .venv/bin/python benchmarks/compare.py --base v0.1.0 --rounds 3 engine service
    .venv/bin/python benchmarks/compare.py --quick         # each benchmark's --quick

The base commit's ``src/`` is extracted with ``git archive`` into a temporary folder; the same
benchmark scripts (this checkout's) then run alternately against each tree (``PYTHONPATH``
first on ``sys.path``, so the installed editable package is shadowed), ``--rounds`` times each,
interleaved so that machine noise hits both alike. Each benchmark writes its figures through
``figures.record`` (``BENCH_JSON``); the table shows the median per figure, the ratio
head/base, and flags a figure more than ``--tolerance`` worse than the base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHES = {
    "engine": ["bench_engine.py"],
    "gateway": ["bench_gateway.py"],
    "service": ["bench_service.py"],
    "transport": ["bench_transport.py"],
    "first_run": ["bench_first_run.py"],
    "kernel": ["bench_kernel.py"],
    "page": ["bench_page.py"],
    "bundle": ["bench_bundle.py"],
}
# Benchmarks of the pages need each side's notebooks and widget bundle (git-ignored: built).
PAGES = {"bench_page.py", "bench_bundle.py"}
# Run when none is named; first_run (45 fresh processes), kernel (an ipykernel) and page
# (Voila and Chromium) and bundle (Chromium) on request.
DEFAULT = ("engine", "gateway", "service", "transport")


class BenchmarkFailed(RuntimeError):
    """One benchmark run failed; the others' figures are still reported."""


def extract(rev: str, into: Path, pages: bool = False) -> Path:
    """``src/`` of commit ``rev`` under ``into`` (with ``pages``: also its notebooks and its
    widget bundle, built); exits with one line when ``rev`` is unknown."""
    paths = ["src", "notebooks", "widgets"] if pages else ["src"]
    done = subprocess.run(
        ["git", "archive", "--format=tar", rev, *paths], cwd=ROOT, capture_output=True
    )
    if done.returncode != 0:
        sys.exit(f"compare: cannot read commit {rev!r}: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    if pages:
        build_bundle(into / "widgets", rev)
    return into / "src"


def build_bundle(widgets: Path, rev: str) -> None:
    """Build an extracted tree's widget bundle into its ``src/`` with this checkout's
    ``node_modules`` (the bundle is git-ignored, so not in the archive)."""
    (widgets / "node_modules").symlink_to(ROOT / "widgets" / "node_modules")
    done = subprocess.run(
        ["node", "build.mjs"], cwd=widgets, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        sys.exit(f"compare: cannot build the widget bundle of {rev!r}: {done.stderr[-2000:]}")


def run_once(script: str, src: Path, quick: bool, out: Path) -> dict[str, dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(src), BENCH_JSON=str(out))
    cmd = [sys.executable, str(HERE / script), *(["--quick"] if quick else [])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not out.exists():
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
        raise BenchmarkFailed(f"{script} failed against {src}:\n{tail}")
    figures: dict[str, dict[str, object]] = json.loads(out.read_text())
    out.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "benches", nargs="*", help=f"any of {', '.join(BENCHES)} (default: {', '.join(DEFAULT)})"
    )
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare against")
    parser.add_argument(
        "--head", default=None, help="the commit to measure (default: this working tree)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side (interleaved)")
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick")
    parser.add_argument(
        "--tolerance", type=float, default=0.10, help="flag figures worse than this (0.10 = 10%%)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    unknown = [name for name in args.benches if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    scripts = [s for name in (args.benches or DEFAULT) for s in BENCHES[name]]
    pages = bool(PAGES & set(scripts))
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        head = extract(args.head, Path(tmp) / "head", pages) if args.head else ROOT / "src"
        trees = {"base": extract(args.base, Path(tmp) / "base", pages), "head": head}
        results: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
        meta: dict[str, dict[str, object]] = {}
        failures: list[str] = []
        for script in scripts:
            for round_ in range(args.rounds):
                # Alternate which side goes first, so a warming machine favours neither.
                order = ("base", "head") if round_ % 2 == 0 else ("head", "base")
                for side in order:
                    print(f"... {script} round {round_ + 1} ({side})", file=sys.stderr)
                    out = Path(tmp) / f"{side}.json"
                    try:
                        figures = run_once(script, trees[side], args.quick, out)
                    except BenchmarkFailed as exc:
                        failures.append(str(exc))
                        print(f"compare: {exc}", file=sys.stderr)
                        continue
                    for name, fig in figures.items():
                        results[side].setdefault(name, []).append(float(fig["value"]))  # type: ignore[arg-type]
                        meta[name] = fig
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    label = args.head or "this checkout"
    print(f"# benchmarks: {label} vs {args.base} ({rev}), median of {args.rounds} round(s)")
    print(f"{'figure':<44} {'base':>10} {'head':>10} {'head/base':>9}  verdict")
    worse = 0
    for name, fig in meta.items():
        if name not in results["base"] or name not in results["head"]:
            print(f"{name:<44} {'(only on one side)':>31}")
            continue
        b, h = statistics.median(results["base"][name]), statistics.median(results["head"][name])
        ratio = h / b if b else float("nan")
        lower_better = fig["better"] == "lower"
        change = (h - b) / abs(b) if b else 0.0
        bad = change > args.tolerance if lower_better else change < -args.tolerance
        worse += bad
        verdict = "WORSE" if bad else "ok"
        unit = str(fig["unit"])
        print(f"{name:<44} {b:>8.3g}{unit:<2} {h:>8.3g}{unit:<2} {ratio:>9.3f}  {verdict}")
    print(f"{worse} figure(s) more than {args.tolerance:.0%} worse than {args.base}")
    if failures:
        print(f"{len(failures)} benchmark run(s) failed (see above); their figures are missing")
        sys.exit(1)


if __name__ == "__main__":
    main()
