"""Where an engine run's CPU goes at N concurrent runs (issue #10): CPU per run, the cyclic
garbage collector's share of it by generation, events per run, and the sizes of the ``llm`` log
batches, with ``llm`` logging on and off; then the same once more after ``gc.freeze()`` (what
a process that froze its start-up objects would see).

Run: ``.venv/bin/python benchmarks/profile_engine.py`` (``--quick``: 10 runs). Same loopback
server and models as ``bench_engine.py``; it is a profile, not a benchmark: no targets.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import run_benchmark
from loopback_server import ARBITER, MEMBERS

GC: dict[str, Any] = {"start": 0.0, "ms": [0.0, 0.0, 0.0], "count": [0, 0, 0]}


def on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        GC["start"] = time.process_time()
    else:
        GC["ms"][info["generation"]] += (time.process_time() - GC["start"]) * 1000
        GC["count"][info["generation"]] += 1


async def count_events(consortium: Any) -> int:
    return len([event async for event in consortium.stream("Q")])


async def main(quick: bool) -> None:
    from consortium_lab import Consortium, Gateway
    from consortium_lab.gateway import llm_log_writer

    n = 10 if quick else 50
    batches: list[int] = []
    log = llm_log_writer.log_to_llm

    def sized(response: Any, **kwargs: Any) -> Any:
        batches.append(len(response) if isinstance(response, list) else 1)
        return log(response, **kwargs)

    llm_log_writer.log_to_llm = sized
    ways = {
        "logging on": Consortium(
            models=list(MEMBERS), arbiter=ARBITER[0], store=False, gateway=Gateway(cache=None)
        ),
        "logging off": Consortium(
            models=list(MEMBERS),
            arbiter=ARBITER[0],
            store=False,
            gateway=Gateway(cache=None, log_to_llm=False),
        ),
    }
    for consortium in ways.values():
        await count_events(consortium)
    gc.callbacks.append(on_gc)
    for frozen in (False, True):
        if frozen:
            gc.collect()
            gc.freeze()
        for name, consortium in ways.items():
            llm_log_writer.default_writer().flush()
            GC.update(ms=[0.0, 0.0, 0.0], count=[0, 0, 0])
            batches.clear()
            cpu0 = time.process_time()
            events = await asyncio.gather(*(count_events(consortium) for _ in range(n)))
            await asyncio.to_thread(llm_log_writer.default_writer().flush)
            cpu = (time.process_time() - cpu0) / n * 1000
            gc_ms = sum(GC["ms"]) / n
            by_gen = ", ".join(
                f"gen{g} {GC['count'][g]}x {GC['ms'][g] / n:.1f} ms" for g in range(3)
            )
            sizes = (
                f"{len(batches)} llm log batches, mean {sum(batches) / max(len(batches), 1):.0f}"
            )
            print(
                f"{'after gc.freeze(), ' if frozen else ''}{name}: {n} runs, CPU {cpu:.1f} ms "
                f"per run, of it GC {gc_ms:.1f} ms ({by_gen}); "
                f"{sum(events) / n:.0f} events per run" + (f"; {sizes}" if batches else ""),
                flush=True,
            )


if __name__ == "__main__":
    run_benchmark(main, __doc__, "10 runs")
