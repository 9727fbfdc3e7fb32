"""The first run in a fresh process: its first visible member token against a direct ``llm``
call's first token, each measured in a process of its own (issue #10: target <= +50 ms).

Every sample is a new Python process that has imported ``llm`` and ``consortium_lab`` and
loaded ``llm``'s plugins as a chat kernel does (without llm-consortium's; the same in every
mode, and not part of a run) and then, from the clock's start:

- ``direct``: ``llm.get_async_model("bench-a").prompt(...)``, to its first chunk;
- ``engine``: ``Consortium(models=..., arbiter=...)`` with the default gateway and the default
  run log (the per-user file, as a chat kernel has), ``stream(...)`` to the first
  ``member_delta``;
- ``preheated``: the same after ``consortium_lab.apps.voila.warm_up()``, which a preheated
  Voila chat kernel runs before its page opens.

Each prompt is new, so the answer cache never answers. The modes alternate; medians are
printed with the difference from ``direct``.

Run: ``.venv/bin/python benchmarks/bench_first_run.py`` (``--quick``: fewer samples).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figures import record  # noqa: E402

from loopback_server import ARBITER, MEMBERS  # noqa: E402

MODES = ("direct", "engine", "preheated")
LABELS = {
    "engine": "engine run, first member token",
    "preheated": "preheated kernel, first member token",
}


async def _child(mode: str) -> dict[str, float]:
    """One sample in this (fresh) process; returns milliseconds from the start."""
    import llm
    import llm.plugins

    import consortium_lab
    from consortium_lab.apps import voila

    # Plugins loaded as a chat kernel loads them (without llm-consortium's), in every mode:
    # what is compared is the run, not the plugins.
    llm.plugins.pm.set_blocked("llm_consortium")
    llm.plugins.load_plugins()
    prompt = f"Q {uuid.uuid4().hex}"
    out: dict[str, float] = {}
    if mode == "preheated":
        start = time.perf_counter()
        voila.warm_up()
        out["warm_up"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    if mode == "direct":
        async for _chunk in llm.get_async_model(next(iter(MEMBERS))).prompt(prompt):
            out["first_token"] = (time.perf_counter() - start) * 1000
            break
        return out
    consortium = consortium_lab.Consortium(models=list(MEMBERS), arbiter=ARBITER[0])
    run = consortium.stream(prompt)
    async with run:
        async for event in run:
            if event.kind == "member_delta" and "first_token" not in out:
                out["first_token"] = (time.perf_counter() - start) * 1000
                await run.cancel()
    return out


def sample(mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "child", mode], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        sys.exit(f"bench_first_run: the {mode} child failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(quick: bool) -> None:
    from bench_engine import setup_home, start_server

    setup_home()
    server, _ = start_server()
    try:
        for mode in MODES:  # create the run log, the cache folder and llm's logs.db once
            sample(mode)
        samples: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for _ in range(5 if quick else 15):
            for mode in MODES:
                samples[mode].append(sample(mode))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    first = {m: statistics.median(s["first_token"] for s in samples[m]) for m in MODES}
    print(f"# the first run in a fresh process ({len(samples['direct'])} processes per mode)")
    print(f"direct llm call, first token          {first['direct']:7.1f} ms")
    for mode in ("engine", "preheated"):
        added = first[mode] - first["direct"]
        record(f"first run: first token, {mode} - direct", added, "ms")
        print(f"{LABELS[mode]:38} {first[mode]:7.1f} ms  ({added:+.1f} ms; target <= +50 ms)")
    warm = statistics.median(s["warm_up"] for s in samples["preheated"])
    print(f"warm_up() before the page opens        {warm:7.1f} ms (not on the run's path)")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        import asyncio

        print(json.dumps(asyncio.run(_child(sys.argv[2]))))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer processes per mode")
    main(parser.parse_args().quick)
