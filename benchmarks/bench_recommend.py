"""What the "for prompts like this" hint costs a chat kernel: memory and time.

A run log of ``--runs`` finished runs (default 1000, three members each, prompts drawn from a
few topics) is written through the run-log API. Then, in a fresh process marked as a chat
kernel (``CONSORTIUM_LAB_CHAT_KERNEL=1``, as Voila's kernels are), this script measures:

- resident memory before the first suggestion and after it (scikit-learn and its numpy and
  scipy are loaded by it);
- the seconds taken to read the log, to build the index with the first look-up (which includes
  importing scikit-learn), and for a later look-up on the same index.

Run: ``.venv/bin/python benchmarks/bench_recommend.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figures import record  # noqa: E402

TOPICS = {
    "python": ("How do I {} a python list?", ["sort", "reverse", "copy", "filter", "slice"]),
    "cooking": ("How long should I {} onions?", ["cook", "fry", "roast", "boil", "grill"]),
    "travel": ("Is it worth taking the train to {}?", ["Paris", "Rome", "Vienna", "Oslo"]),
    "math": ("What is the derivative of {}?", ["sin x", "x squared", "log x", "e to the x"]),
}
MEMBERS = ("alpha", "beta", "gamma")

CHILD = """
import json, sys, time
def rss():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) / 1024
from consortium_lab.recommender.advice import read_history
from consortium_lab.recommender.topics import PromptIndex
from consortium_lab.widget import recommending  # what a chat kernel holds
before = rss()
t0 = time.perf_counter(); runs = read_history(sys.argv[1]); t1 = time.perf_counter()
index = PromptIndex(runs)
first = index.suggest("How do I shuffle a python list?"); t2 = time.perf_counter()
later = index.suggest("How long should I steam onions?"); t3 = time.perf_counter()
assert first.enough_history and later.enough_history, (first.message, later.message)
print(json.dumps({"rss_before": before, "rss_after": rss(), "read": t1 - t0,
                  "first": t2 - t1, "later": t3 - t2, "sklearn": "sklearn" in sys.modules}))
"""


def write_log(path: Path, runs: int) -> None:
    from consortium_lab.engine.events import (
        IterationFinished,
        IterationStarted,
        MemberDone,
        RunFinished,
        RunStarted,
        SynthesisReady,
    )
    from consortium_lab.sinks.runlog import RunStore

    topics = list(TOPICS.values())
    with RunStore(path) as store:
        for i in range(runs):
            template, words = topics[i % len(topics)]
            prompt = template.format(words[(i // len(topics)) % len(words)]) + f" (case {i})"
            run_id = f"bench-{i}"
            config = {"models": dict.fromkeys(MEMBERS, 1), "arbiter": "alpha"}
            store.record(RunStarted(run_id=run_id, prompt=prompt, config=config))
            store.record(IterationStarted(run_id=run_id, iteration=1))
            for j, model in enumerate(MEMBERS):
                text = "The answer is the same." if (i + j) % 3 else f"Another view {i}."
                store.record(
                    MemberDone(
                        run_id=run_id,
                        model=model,
                        instance=1,
                        iteration=1,
                        text=text,
                        answer=text,
                        latency_ms=100.0 + j,
                    )
                )
            store.record(
                SynthesisReady(
                    run_id=run_id, iteration=1, model="alpha", synthesis="The answer is the same."
                )
            )
            store.record(IterationFinished(run_id=run_id, iteration=1))
            store.record(RunFinished(run_id=run_id, iterations=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        write_log(db, args.runs)
        env = {**os.environ, "CONSORTIUM_LAB_CHAT_KERNEL": "1"}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(db)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    n = args.runs
    print(f"run log: {n} finished runs, {len(MEMBERS)} members each")
    rows = [
        ("chat kernel RSS before the first suggestion", out["rss_before"], "MB"),
        ("chat kernel RSS after it", out["rss_after"], "MB"),
        ("read the run log", out["read"], "s"),
        ("first suggestion (import scikit-learn, fit)", out["first"], "s"),
        ("a later suggestion (same index)", out["later"], "s"),
    ]
    for name, value, unit in rows:
        record(f"recommend {n} runs: {name}", value, unit)
        print(f"  {name:<46} {value:9.3f} {unit}")
    ratio = out["first"] / out["later"] if out["later"] else float("inf")
    record(f"recommend {n} runs: first / later suggestion", ratio, "x")
    print(f"  first / later suggestion: {ratio:.0f}x")


if __name__ == "__main__":
    main()
