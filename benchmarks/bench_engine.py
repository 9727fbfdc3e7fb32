"""Engine overhead, side by side in one process and one run.

Against the loopback OpenAI-compatible server (tests/fake_openai.py) with injected latencies,
through llm's real OpenAI plugin, it measures:

1. baseline: a direct ``llm`` async streaming call to each model (first token, total);
2. our engine: time to the first visible member token against the baseline's first token, and
   total wall time against the critical path (slowest member + arbiter per iteration);
3. ``llm_consortium.create_consortium(...).orchestrate`` on the same models;
4. 50 concurrent runs against one run: wall time, CPU time, peak RSS;
5. the floor (``floor.py``: plain aiohttp + orjson doing the same I/O as a run) at one and at
   50 concurrent runs, and the engine's figures as ratios to it, with ``llm`` logging on and
   off; the loopback server's CPU while the engine's 50 runs stream.

Run: ``.venv/bin/python benchmarks/bench_engine.py`` (``--quick`` for a smaller run). Results
are ratios against the baseline measured in the same run, so machine noise mostly cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from figures import record  # noqa: E402
from floor import proc_cpu  # noqa: E402

from loopback_server import ARBITER, MEMBERS  # noqa: E402

SERVER_PID: list[int] = []


def setup_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="consortium-bench-"))
    for name, sub in (
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "home/.config"),
        ("XDG_DATA_HOME", "home/.local"),
        ("LLM_USER_PATH", "llm"),
        ("CONSORTIUM_LAB_HOME", "lab"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(home / sub)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    return home


def start_server() -> tuple[subprocess.Popen[str], str]:
    """Start the loopback server process and register its models with llm."""
    import yaml

    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "loopback_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    yaml_path = Path(os.environ["LLM_USER_PATH"]) / "extra-openai-models.yaml"
    yaml_path.write_text(
        yaml.safe_dump(
            [{"model_id": m, "model_name": m, "api_base": base_url} for m in [*MEMBERS, ARBITER[0]]]
        )
    )
    return proc, base_url


async def direct_call(model_id: str, prompt: str) -> tuple[float, float]:
    import llm

    start = time.perf_counter()
    first = None
    async for _chunk in llm.get_async_model(model_id).prompt(prompt):
        if first is None:
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


async def baseline(repeats: int) -> dict[str, tuple[float, float]]:
    out = {}
    for model in [*MEMBERS, ARBITER[0]]:
        samples = [await direct_call(model, "Q") for _ in range(repeats)]
        out[model] = (
            statistics.median(s[0] for s in samples),
            statistics.median(s[1] for s in samples),
        )
    return out


async def engine_once(consortium) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    first = None
    async for event in consortium.stream("Q"):
        if first is None and event.kind == "member_delta":
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(quick: bool) -> None:
    from consortium_lab import Consortium, Gateway

    repeats = 3 if quick else 7
    concurrent = 10 if quick else 50
    base = await baseline(repeats)
    fastest_first = min(base[m][0] for m in MEMBERS)
    critical = 2 * (max(base[m][1] for m in MEMBERS) + base[ARBITER[0]][1])

    # No cache: every run must reach the models (the cache is measured in bench_gateway.py).
    consortium = Consortium(
        models=list(MEMBERS), arbiter=ARBITER[0], store=False, gateway=Gateway(cache=None)
    )
    runs = [await engine_once(consortium) for _ in range(repeats)]
    first = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)

    from llm_consortium import create_consortium

    upstream = create_consortium(models=list(MEMBERS), arbiter=ARBITER[0], max_iterations=2)
    up_times = []
    for _ in range(max(1, repeats // 2)):
        start = time.perf_counter()
        await asyncio.to_thread(upstream.orchestrate, "Q")
        up_times.append(time.perf_counter() - start)
    up_total = statistics.median(up_times)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await engine_once(consortium)
    one_cpu, one_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_one = rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(engine_once(consortium) for _ in range(concurrent)))
    many_cpu, many_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_many = rss_mb()

    floor = await floor_figures(concurrent)
    quiet = Consortium(
        models=list(MEMBERS),
        arbiter=ARBITER[0],
        store=False,
        gateway=Gateway(cache=None, log_to_llm=False),
    )
    await engine_once(quiet)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    server0 = proc_cpu(SERVER_PID[0]) if SERVER_PID else float("nan")
    await asyncio.gather(*(engine_once(quiet) for _ in range(concurrent)))
    quiet_cpu, quiet_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server_cpu = (proc_cpu(SERVER_PID[0]) if SERVER_PID else float("nan")) - server0
    frozen = await frozen_figures(consortium, quiet, concurrent)
    record(f"floor: {concurrent} runs wall", floor["many_wall"] * 1000, "ms")
    record(f"floor: CPU per run, {concurrent} at once", floor["many_cpu"] / concurrent * 1000, "ms")
    record(f"engine/floor: {concurrent} runs wall", many_wall / floor["many_wall"], "x")
    record(f"engine/floor: CPU per run, {concurrent} at once", many_cpu / floor["many_cpu"], "x")
    record(
        f"engine/floor: CPU per run, {concurrent} at once, logging off",
        quiet_cpu / floor["many_cpu"],
        "x",
    )
    record(
        f"engine/floor: {concurrent} runs wall, logging off", quiet_wall / floor["many_wall"], "x"
    )
    record(
        f"loopback server: CPU per run, {concurrent} at once", server_cpu / concurrent * 1000, "ms"
    )
    record("engine: first member token added", (first - fastest_first) * 1000, "ms")
    record("engine: total / critical path", total / critical, "x")
    record("engine: CPU per run", one_cpu * 1000, "ms")
    record(f"engine: {concurrent} concurrent runs / one run", many_wall / one_wall, "x")
    record(f"engine: CPU per run, {concurrent} at once", many_cpu / concurrent * 1000, "ms")
    record("engine: peak RSS", rss_many, "MB")
    print(
        f"# consortium_lab engine benchmark ({len(MEMBERS)} members, 2 iterations, "
        f"{repeats} repeats, medians)"
    )
    print(f"baseline first token (fastest member)   {fastest_first * 1000:8.1f} ms")
    print(
        f"engine first visible member token       {first * 1000:8.1f} ms  "
        f"({(first - fastest_first) * 1000:+.1f} ms; target < +20 ms)"
    )
    print(f"critical path (2 x slowest member + arbiter, direct calls) {critical * 1000:8.1f} ms")
    print(
        f"engine total                            {total * 1000:8.1f} ms  "
        f"({total / critical:.3f} x critical path; target <= 1.05)"
    )
    print(
        f"llm-consortium 0.8.0 orchestrate total  {up_total * 1000:8.1f} ms  "
        f"({up_total / critical:.3f} x critical path; no streaming: first token = total)"
    )
    print(
        f"one run:  wall {one_wall * 1000:8.1f} ms, CPU {one_cpu * 1000:7.1f} ms, "
        f"peak RSS {rss_one:.0f} MB"
    )
    print(
        f"{concurrent} concurrent runs: wall {many_wall * 1000:8.1f} ms "
        f"({many_wall / one_wall:.3f} x one run; target <= 1.10), CPU {many_cpu * 1000:7.1f} ms "
        f"({many_cpu / max(one_cpu, 1e-9) / concurrent:.2f} x per run), "
        f"peak RSS {rss_many:.0f} MB"
    )
    print(
        f"floor (aiohttp + orjson, same I/O): one run wall {floor['one_wall'] * 1000:.1f} ms, "
        f"CPU {floor['one_cpu'] * 1000:.1f} ms; {concurrent} runs wall "
        f"{floor['many_wall'] * 1000:.1f} ms, CPU per run "
        f"{floor['many_cpu'] / concurrent * 1000:.1f} ms"
    )
    print(
        f"engine / floor, {concurrent} runs, llm logging on:  wall "
        f"{many_wall / floor['many_wall']:.2f} x (target <= 1.3), CPU per run "
        f"{many_cpu / floor['many_cpu']:.2f} x (target <= 2.5)"
    )
    print(
        f"engine / floor, {concurrent} runs, llm logging off: wall "
        f"{quiet_wall / floor['many_wall']:.2f} x, CPU per run "
        f"{quiet_cpu / floor['many_cpu']:.2f} x (target <= 1.8)"
    )
    floor_cpu, floor_wall = frozen["floor"]
    for label, key in (("on", "logged"), ("off", "quiet")):
        cpu, wall = frozen[key]
        record(
            f"engine/floor: {concurrent} runs wall, gc frozen, logging {label}",
            wall / floor_wall,
            "x",
        )
        record(
            f"engine/floor: CPU per run, {concurrent} at once, gc frozen, logging {label}",
            cpu / floor_cpu,
            "x",
        )
        print(
            f"engine / floor, {concurrent} runs, after gc.freeze() (as a chat kernel and the "
            f"gateway service run), logging {label}: wall {wall / floor_wall:.2f} x, "
            f"CPU per run {cpu / floor_cpu:.2f} x"
        )
    print(
        f"loopback server CPU while the engine's {concurrent} runs streamed (logging off): "
        f"{server_cpu * 1000:.0f} ms ({server_cpu / concurrent * 1000:.1f} ms per run)"
    )


async def frozen_figures(
    logged: object, quiet: object, concurrent: int
) -> dict[str, tuple[float, float]]:
    """Wall and CPU of ``concurrent`` runs with logging on and off after ``gc.freeze()``, as in
    a chat kernel after ``warm_up()`` and in the gateway service: full collections then walk
    only what the runs made, not the ~240,000 objects left by importing llm, the openai SDK
    and pydantic. Measured last, since the freeze lasts for the rest of the process."""
    import gc

    gc.collect()
    gc.freeze()
    out = {}
    for key, consortium in (("logged", logged), ("quiet", quiet)):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(engine_once(consortium) for _ in range(concurrent)))
        out[key] = (time.process_time() - cpu0, time.perf_counter() - wall0)
    # The floor again, frozen too, so the ratios compare like with like.
    floor = await floor_figures(concurrent)
    out["floor"] = (floor["many_cpu"], floor["many_wall"])
    return out


async def floor_figures(concurrent: int) -> dict[str, float]:
    """The floor client's wall and CPU time for one run and for ``concurrent`` runs."""
    from floor import floor_run, floor_session

    base_url = os.environ["BENCH_BASE_URL"]
    async with floor_session() as session:
        await floor_run(session, base_url)  # warm the connection pool
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await floor_run(session, base_url)
        one_cpu, one_wall = time.process_time() - cpu0, time.perf_counter() - wall0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(floor_run(session, base_url) for _ in range(concurrent)))
        many_cpu, many_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"one_cpu": one_cpu, "one_wall": one_wall, "many_cpu": many_cpu, "many_wall": many_wall}


def run_benchmark(main: Callable[[bool], Awaitable[None]], doc: str, quick_help: str) -> None:
    """The command line of a benchmark: ``--quick``, a temporary home, the loopback server
    process for the duration of ``main(quick)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args()
    setup_home()
    server, base_url = start_server()
    os.environ["BENCH_BASE_URL"] = base_url
    SERVER_PID.append(server.pid)
    try:
        asyncio.run(main(args.quick))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    run_benchmark(main, __doc__, "fewer repeats and 10 runs")
