"""Two gateway replicas sharing Redis against one: the latency each adds to the direct call.

Processes: the loopback OpenAI-compatible server (``loopback_server.py``, its chunks
pre-encoded so it is not the bottleneck), one real ``redis-server`` (no persistence), two
gateway services (``consortium-lab gateway``, cache off, both with the same ``redis`` URL: the
ledger and quota counters are shared, as in ``hub/k8s/gateway.yaml``), the floor proxy
(``floor.py proxy``), and this client. At 50 and 200 concurrent streams, side by side in each
round (the order alternating), it streams chat completions:

- ``direct``: straight to the loopback server (the baseline);
- ``floor``: through the floor proxy (the least a proxy can add);
- ``one``: every stream through replica A;
- ``two``: the streams spread over replicas A and B round-robin by this client (what a
  Kubernetes Service does per connection).

For each level it prints each way's p50/p99 of the full stream time, the latency it adds to
the direct call, the CPU per stream of the replicas (both, for ``two``), and the ratios of
``two`` to ``one`` and of each to the floor proxy side by side.

Run: ``.venv/bin/python benchmarks/bench_replicas.py`` (``--quick``: one round per level).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # the redis-server helper

from bench_service import (
    MODEL,
    TOKEN,
    cpu_seconds,
    one_stream,
    pct,
    start_floor_proxy,
    start_service,
)
from figures import record
from redis_server import RedisServer, find_redis_server

from bench_engine import setup_home, start_server
from loopback_server import MEMBERS, TOKENS

LEVELS = (50, 200)
BODY = orjson.dumps(
    {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Q"}]}
)


class Way:
    """One way to the model: the URLs its streams go to (round-robin), their headers, the
    processes whose CPU it costs, and what was measured of it at the current level."""

    def __init__(self, name: str, urls: list[str], headers: dict[str, str], pids: list[int]):
        self.name, self.urls, self.pids = name, urls, pids
        self.headers = {**headers, "Content-Type": "application/json"}
        self.samples: list[float] = []
        self.cpu = 0.0

    def cpu_per_stream_ms(self) -> float:
        return self.cpu / len(self.samples) * 1000 if self.pids else float("nan")

    async def round(self, client: aiohttp.ClientSession, n: int) -> None:
        """``n`` concurrent streams, stream ``i`` to ``urls[i % len(urls)]``."""
        cpu0 = sum(cpu_seconds(p) for p in self.pids)
        self.samples += await asyncio.gather(
            *(
                one_stream(client, self.urls[i % len(self.urls)], self.headers, BODY)
                for i in range(n)
            )
        )
        self.cpu += sum(cpu_seconds(p) for p in self.pids) - cpu0


async def main(
    provider_url: str, replicas: list[tuple[str, int]], floor: tuple[str, int], quick: bool
) -> None:
    chat = "/v1/chat/completions"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    (a_url, a_pid), (b_url, b_pid) = replicas
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    print(
        f"# two gateway replicas sharing Redis vs one ({MODEL}: first token"
        f" {MEMBERS[MODEL] * 1000:.0f} ms, {TOKENS} tokens; full stream time, request to [DONE];"
        " added = way minus direct)"
    )
    print(
        f"{'streams':>7} {'way':>7} {'p50':>9} {'p99':>9} {'added p50':>10} {'added p99':>10}"
        f" {'CPU/stream':>10}"
    )
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        for n in LEVELS:
            ways = [
                Way("direct", [provider_url.rstrip("/") + "/chat/completions"], {}, []),
                Way("floor", [floor[0].rstrip("/") + chat], {}, [floor[1]]),
                Way("one", [a_url.rstrip("/") + chat], auth, [a_pid]),
                Way("two", [u.rstrip("/") + chat for u in (a_url, b_url)], auth, [a_pid, b_pid]),
            ]
            for way in ways:  # warm every path and both replicas' connections
                await way.round(client, 4)
                way.samples, way.cpu = [], 0.0
            for r in range(1 if quick else 4):
                # Alternate the order so that load drifts hit every way alike.
                for way in ways if r % 2 == 0 else ways[::-1]:
                    await way.round(client, n)
            direct = ways[0]
            added: dict[str, tuple[float, float]] = {}
            for way in ways:
                p50, p99 = pct(way.samples, 0.5), pct(way.samples, 0.99)
                added[way.name] = (
                    (p50 - pct(direct.samples, 0.5)) * 1000,
                    (p99 - pct(direct.samples, 0.99)) * 1000,
                )
                cpu = way.cpu_per_stream_ms()
                print(
                    f"{n:>7} {way.name:>7} {p50 * 1000:7.1f}ms {p99 * 1000:7.1f}ms"
                    f" {added[way.name][0]:+8.1f}ms {added[way.name][1]:+8.1f}ms"
                    + (f" {cpu:8.2f}ms" if way.pids else f" {'-':>10}")
                )
                if way.name != "direct":
                    for i, q in enumerate(("p50", "p99")):
                        record(f"{way.name}: added {q} at {n} streams", added[way.name][i], "ms")
                    record(f"{way.name}: CPU per stream at {n}", cpu, "ms")
            floor_way, one, two = ways[1], ways[2], ways[3]
            cells = []
            for q, f in (("p50", 0.5), ("p99", 0.99)):
                two_one = record(
                    f"two / one: {q} at {n} streams", pct(two.samples, f) / pct(one.samples, f), "x"
                )
                one_floor = pct(one.samples, f) / pct(floor_way.samples, f)
                two_floor = pct(two.samples, f) / pct(floor_way.samples, f)
                record(f"one / floor: {q} at {n} streams", one_floor, "x")
                record(f"two / floor: {q} at {n} streams", two_floor, "x")
                cells.append(
                    f"{q} two/one {two_one:.3f}x, one/floor {one_floor:.3f}x,"
                    f" two/floor {two_floor:.3f}x"
                )
            cpu_ratio = record(
                f"two / one: CPU per stream at {n}",
                two.cpu_per_stream_ms() / one.cpu_per_stream_ms(),
                "x",
            )
            print(f"{n:>7} {'ratios':>7} {'; '.join(cells)}; CPU/stream two/one {cpu_ratio:.2f}x")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round per level")
    args = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        sys.exit("bench_replicas: redis-server is not installed (apt-get install redis-server)")
    home = setup_home()
    os.environ["CONSORTIUM_LAB_DEMO_DELAY"] = "0"
    server, base_url = start_server()
    redis = RedisServer(binary, Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
    processes = []
    try:
        replicas = []
        for name in ("a", "b"):
            folder = home / f"replica-{name}"
            folder.mkdir()
            proc, url = start_service(folder, {"redis": redis.url})
            processes.append(proc)
            replicas.append((url, proc.pid))
        floor, floor_url = start_floor_proxy(base_url)
        try:
            asyncio.run(main(base_url, replicas, (floor_url, floor.pid), args.quick))
        finally:
            assert floor.stdin is not None
            floor.stdin.close()
            floor.wait(timeout=30)
    finally:
        for proc in processes:
            proc.terminate()
            proc.wait(timeout=30)
        redis.stop()
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
