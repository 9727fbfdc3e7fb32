"""The gateway service's added latency and CPU, against the floor proxy and the direct call.

Four processes: the loopback OpenAI-compatible server (``loopback_server.py``), the gateway
service (``consortium-lab gateway``, cache off so every request reaches the provider), the
floor proxy (``floor.py proxy``: aiohttp relaying the bytes, the least a proxy can do), and
this client, which streams chat completions with aiohttp straight to the loopback server (the
baseline), through the floor proxy and through the service, at 1, 50 and 200 concurrent
streams, side by side in each round. For each level it prints the p50/p99 of the full stream
time (request to ``[DONE]``) of each way, the latency each proxy adds to the direct call, the
CPU time per stream (user + system, from ``/proc``) of the service, of the floor proxy and of
the loopback server (so one sees it is not the bottleneck), and the service's figures as
ratios to the floor proxy's; then both proxies' peak memory. At one stream each way streams
200 times (so that p99 is not simply the slowest stream), at 50 and 200 three rounds.

Run: ``.venv/bin/python benchmarks/bench_service.py`` (``--quick``: fewer rounds;
``--levels 1,50``: only those levels). It prints the service's pid first, for
``py-spy record --pid PID`` while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import record

from bench_engine import setup_home, start_server
from loopback_server import MEMBERS, TOKENS

MODEL = next(iter(MEMBERS))
TOKEN = "bench-token-0123456789abcdef"
LEVELS = (1, 50, 200)


def cli_command() -> list[str]:
    """``consortium-lab`` run from the code on ``sys.path``, so that ``compare.py`` can point
    this benchmark at another commit's source (the installed script names one module path)."""
    for module in ("consortium_lab.apps.cli", "consortium_lab.cli"):  # now, before the layout
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # its parent package does not exist in that tree
            found = None
        if found is not None:
            code = f"import sys; sys.argv[0] = 'consortium-lab'; from {module} import main; main()"
            return [sys.executable, "-c", code]
    raise RuntimeError("no consortium_lab CLI module found")


# With --gc-log: the service prints each generation 1 and 2 collection and its duration.
GC_LOG = """
import gc, sys, time
_gc_started = [0.0]
def _gc_log(phase, info):
    if info["generation"] < 1:
        return
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        took = (time.perf_counter() - _gc_started[0]) * 1000
        print(f"service GC gen{info['generation']}: {took:.1f} ms", file=sys.stderr, flush=True)
gc.callbacks.append(_gc_log)
"""


# With --with-hub-auth: what ``auth: hub`` imports, loaded before the service starts (the
# benchmark has no hub to check tokens, so the tokens stay static).
HUB_AUTH_IMPORT = "from jupyterhub.services.auth import HubAuth\n"


def start_service(
    home: Path,
    extra: dict[str, object] | None = None,
    *,
    gc_log: bool = False,
    hub_auth: bool = False,
) -> tuple[subprocess.Popen[str], str]:
    """``consortium-lab gateway`` with its cache off, on a free loopback port; ``extra``
    settings over those (``bench_replicas.py`` passes ``redis``)."""
    tokens = home / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": {TOKEN: {"user": "bench"}}}))
    config = home / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ledger": str(home / "ledger.db"),
                "tokens_file": str(tokens),
                "cache": "none",
                "models": [MODEL],
                **(extra or {}),
            }
        )
    )
    command = cli_command()
    if gc_log:
        command[-1] = GC_LOG + command[-1]
    if hub_auth:
        # After the CLI's own imports decided what to skip, as `auth: hub` imports it.
        command[-1] = command[-1].replace("main()", HUB_AUTH_IMPORT.strip() + "; main()")
    proc = subprocess.Popen(
        [
            *command,
            "gateway",
            "--config",
            str(config),
            "--port",
            "0",
            "--max-lifetime",
            "1800",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on " in line:
            return proc, line.rsplit("listening on ", 1)[1].strip()
    raise RuntimeError("the gateway service did not start")


async def one_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> float:
    """One streamed chat completion read to ``[DONE]`` (aiohttp and a line splitter: a client
    light enough that 200 streams measure the server side, not this process)."""
    start = time.perf_counter()
    buffer = b""
    async with session.post(url, data=body, headers=headers) as response:
        response.raise_for_status()
        async for piece in response.content.iter_any():
            buffer += piece
            if b"data: [DONE]" in buffer:
                break
            buffer = buffer[buffer.rfind(b"\n") + 1 :]
    return time.perf_counter() - start


async def level(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int, rounds: int
) -> list[float]:
    body = orjson.dumps(
        {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Q"}]}
    )
    headers = {**headers, "Content-Type": "application/json"}
    samples: list[float] = []
    for _ in range(rounds):
        samples += await asyncio.gather(
            *(one_stream(session, url, headers, body) for _ in range(n))
        )
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_floor_proxy(base_url: str) -> tuple[subprocess.Popen[str], str]:
    """``floor.py proxy``: the byte-relaying aiohttp proxy, in its own process."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "floor.py"), "proxy", base_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


class Way:
    """One way to the model (direct, floor proxy, service): its URL, headers, process and
    what was measured of it at the current level."""

    def __init__(self, name: str, url: str, headers: dict[str, str], pid: int | None) -> None:
        self.name, self.url, self.headers, self.pid = name, url, headers, pid
        self.samples: list[float] = []
        self.cpu = 0.0  # CPU seconds of its process while its streams ran
        self.server_cpu = 0.0  # CPU seconds of the loopback server meanwhile

    def cpu_per_stream_ms(self) -> float:
        return self.cpu / len(self.samples) * 1000

    def server_cpu_per_stream_ms(self) -> float:
        return self.server_cpu / len(self.samples) * 1000


async def measure(client: aiohttp.ClientSession, way: Way, n: int, server_pid: int) -> None:
    """One round of ``n`` concurrent streams the ``way``; adds to its samples and CPU."""
    cpu0 = cpu_seconds(way.pid) if way.pid else 0.0
    server0 = cpu_seconds(server_pid)
    way.samples += await level(client, way.url, way.headers, n, 1)
    if way.pid:
        way.cpu += cpu_seconds(way.pid) - cpu0
    way.server_cpu += cpu_seconds(server_pid) - server0


async def main(
    provider_url: str,
    service_url: str,
    service_pid: int,
    floor_url: str,
    floor_pid: int,
    server_pid: int,
    quick: bool,
    levels: tuple[int, ...] = LEVELS,
) -> None:
    direct_url = provider_url.rstrip("/") + "/chat/completions"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        for url, headers in (
            (service_url.rstrip("/") + "/v1/chat/completions", auth),
            (floor_url.rstrip("/") + "/v1/chat/completions", {}),
            (direct_url, {}),
        ):
            await level(client, url, headers, 5, 1)  # warm every path
        print(
            f"# gateway service vs the floor proxy ({MODEL}: first token"
            f" {MEMBERS[MODEL] * 1000:.0f} ms, {TOKENS} tokens; full stream time, request to"
            " [DONE]; added = way minus direct)"
        )
        print(
            f"{'streams':>7} {'way':>8} {'p50':>9} {'p99':>9} {'added p50':>10} {'added p99':>10}"
            f" {'CPU/stream':>10} {'server CPU':>10}"
        )
        for n in levels:
            # At one stream 200 samples, so that p99 is not simply the slowest stream.
            rounds = max(1, (20 if quick else 200) // n) if n < 50 else (1 if quick else 3)
            ways = [
                Way("direct", direct_url, {}, None),
                Way("floor", floor_url.rstrip("/") + "/v1/chat/completions", {}, floor_pid),
                Way("service", service_url.rstrip("/") + "/v1/chat/completions", auth, service_pid),
            ]
            for r in range(rounds):
                # Alternate the order of the proxies so that load hits both alike.
                order = ways if r % 2 == 0 else [ways[0], ways[2], ways[1]]
                for way in order:
                    await measure(client, way, n, server_pid)
            direct, floor, service = ways
            added: dict[str, tuple[float, float]] = {}
            for way in ways:
                p50, p99 = pct(way.samples, 0.5), pct(way.samples, 0.99)
                a50 = (p50 - pct(direct.samples, 0.5)) * 1000
                a99 = (p99 - pct(direct.samples, 0.99)) * 1000
                added[way.name] = (a50, a99)
                cpu = f"{way.cpu_per_stream_ms():8.2f}ms" if way.pid else f"{'-':>10}"
                print(
                    f"{n:>7} {way.name:>8} {p50 * 1000:7.1f}ms {p99 * 1000:7.1f}ms"
                    f" {a50:+8.1f}ms {a99:+8.1f}ms {cpu} {way.server_cpu_per_stream_ms():8.2f}ms"
                )
                assert statistics.mean(way.samples) > 0
            s_cpu = record(f"service: CPU per stream at {n}", service.cpu_per_stream_ms(), "ms")
            f_cpu = record(f"floor proxy: CPU per stream at {n}", floor.cpu_per_stream_ms(), "ms")
            record(
                f"loopback server: CPU per stream at {n}", service.server_cpu_per_stream_ms(), "ms"
            )
            for i, q in enumerate(("p50", "p99")):
                record(f"service: added {q} at {n} streams", added["service"][i], "ms")
                record(f"floor proxy: added {q} at {n} streams", added["floor"][i], "ms")
                record(
                    f"service - floor: added {q} at {n} streams",
                    added["service"][i] - added["floor"][i],
                    "ms",
                )
            p50_ratio = record(
                f"service / floor: p50 at {n} streams",
                pct(service.samples, 0.5) / pct(floor.samples, 0.5),
                "x",
            )
            cpu_ratio = record(f"service / floor: CPU per stream at {n}", s_cpu / f_cpu, "x")
            print(
                f"{n:>7} {'ratio':>8} service/floor: CPU per stream {cpu_ratio:.2f}x (target <= 2),"
                f" p50 {p50_ratio:.3f}x, added p50 {added['service'][0] - added['floor'][0]:+.1f}ms"
                f" and p99 {added['service'][1] - added['floor'][1]:+.1f}ms over the floor's"
            )
        peak = record("service: peak RSS", peak_rss_mb(service_pid), "MB")
        floor_peak = record("floor proxy: peak RSS", peak_rss_mb(floor_pid), "MB")
        print(
            f"peak RSS after {max(levels)} streams: service {peak:.0f} MB,"
            f" floor proxy {floor_peak:.0f} MB"
            f" ({peak / floor_peak:.1f}x; target <= 150 MB)"
        )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds per level")
    parser.add_argument(
        "--levels",
        default=",".join(map(str, LEVELS)),
        help="concurrent streams to measure, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--gc-log",
        action="store_true",
        help="have the service print each full (and generation 1) garbage collection it makes",
    )
    parser.add_argument(
        "--with-hub-auth",
        action="store_true",
        help="load JupyterHub's HubAuth into the service, as auth: hub does (its memory)",
    )
    args = parser.parse_args()
    levels = tuple(int(n) for n in args.levels.split(","))
    home = setup_home()
    os.environ["CONSORTIUM_LAB_DEMO_DELAY"] = "0"
    server, base_url = start_server()
    service = floor = None
    try:
        service, service_url = start_service(home, gc_log=args.gc_log, hub_auth=args.with_hub_auth)
        print(f"# service pid {service.pid} (for py-spy record --pid)", flush=True)
        floor, floor_url = start_floor_proxy(base_url)
        asyncio.run(
            main(
                base_url,
                service_url,
                service.pid,
                floor_url,
                floor.pid,
                server.pid,
                args.quick,
                levels,
            )
        )
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        if floor is not None:
            assert floor.stdin is not None
            floor.stdin.close()
            floor.wait(timeout=30)
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
