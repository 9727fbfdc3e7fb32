"""Gateway costs, side by side in one process and one run.

Against the loopback server of ``loopback_server.py`` (its own process), through llm's real
OpenAI plugin, it measures as ratios against a baseline taken in the same run:

1. a cached re-run of a 4-member, 2-iteration consortium against the uncached run
   (target < 2 %);
2. 50 concurrent consortium runs through the gateway (distinct prompts, so no cache hits)
   against one run (target within 10 %).

Run: ``.venv/bin/python benchmarks/bench_gateway.py`` (``--quick``: 10 concurrent runs).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import record

from bench_engine import engine_once, rss_mb, run_benchmark
from loopback_server import ARBITER, MEMBERS


async def main(quick: bool) -> None:
    from consortium_lab import Consortium, Gateway

    concurrent = 10 if quick else 50
    repeats = 3 if quick else 5
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-cache-"))

    def consortium(gateway: Gateway) -> Consortium:
        return Consortium(models=list(MEMBERS), arbiter=ARBITER[0], store=False, gateway=gateway)

    uncached, cached = [], []
    for i in range(repeats):
        gw = Gateway(cache=cache_dir / str(i), log_to_llm=False)
        c = consortium(gw)
        start = time.perf_counter()
        await c.run(f"cache probe {i}")
        uncached.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = await c.run(f"cache probe {i}")
        cached.append(time.perf_counter() - start)
        assert all(m.cached for it in result.iterations for m in it.members)
    u, c_ = statistics.median(uncached), statistics.median(cached)

    gw = Gateway(cache=None, log_to_llm=False)
    c = consortium(gw)
    await engine_once(c)  # warm the shared HTTP clients
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await c.run("one run")
    one_cpu, one_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(c.run(f"concurrent run {i}") for i in range(concurrent)))
    many_cpu, many_wall = time.process_time() - cpu0, time.perf_counter() - wall0

    record("gateway: cached re-run / uncached", c_ / u, "x")
    record("gateway: CPU per run", one_cpu * 1000, "ms")
    record(f"gateway: {concurrent} concurrent runs / one run", many_wall / one_wall, "x")
    print(f"# consortium_lab gateway benchmark ({len(MEMBERS)} members, 2 iterations)")
    print(f"uncached run (median of {repeats})          {u * 1000:8.1f} ms")
    print(
        f"cached re-run (median of {repeats})         {c_ * 1000:8.1f} ms  "
        f"({c_ / u:.2%} of uncached; target < 2%)"
    )
    print(
        f"one run through the gateway            {one_wall * 1000:8.1f} ms, "
        f"CPU {one_cpu * 1000:.0f} ms"
    )
    print(
        f"{concurrent} concurrent runs                     {many_wall * 1000:8.1f} ms  "
        f"({many_wall / one_wall:.3f} x one run; target <= 1.10), CPU {many_cpu * 1000:.0f} ms, "
        f"peak RSS {rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    run_benchmark(main, __doc__, "10 concurrent runs, 3 repeats")
