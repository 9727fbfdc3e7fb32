"""The gateway service's added latency, against calling the loopback server directly.

Three processes: the loopback OpenAI-compatible server (``loopback_server.py``), the gateway
service (``consortium-lab gateway``, cache off so every request reaches the provider), and this
client, which streams chat completions with httpx either straight to the loopback server (the
baseline) or through the service, at 1, 50 and 200 concurrent streams. For each level it prints
the p50/p99 of the full stream time (request to ``[DONE]``) both ways, the difference in
milliseconds and as a fraction of the direct latency, and the service's CPU time per stream
(user + system, from ``/proc``: its own work, the openai SDK's parsing and the HTTP stacks);
then the service's peak memory.

Run: ``.venv/bin/python benchmarks/bench_service.py`` (``--quick``: fewer rounds).
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

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import record

from bench_engine import setup_home, start_server
from loopback_server import MEMBERS

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


def start_service(home: Path) -> tuple[subprocess.Popen[str], str]:
    """``consortium-lab gateway`` with its cache off, on a free loopback port."""
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
            }
        )
    )
    proc = subprocess.Popen(
        [
            *cli_command(),
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


async def one_stream(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Q"}]}
    start = time.perf_counter()
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                break
    return time.perf_counter() - start


async def level(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], n: int, rounds: int
) -> list[float]:
    samples: list[float] = []
    for _ in range(rounds):
        samples += await asyncio.gather(*(one_stream(client, url, headers) for _ in range(n)))
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


async def main(provider_url: str, service_url: str, service_pid: int, quick: bool) -> None:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    direct_url = provider_url.rstrip("/") + "/chat/completions"
    via_url = service_url.rstrip("/") + "/v1/chat/completions"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        await level(client, via_url, auth, 5, 1)  # warm both paths
        await level(client, direct_url, {}, 5, 1)
        print(
            f"# gateway service overhead ({MODEL}: first token {MEMBERS[MODEL] * 1000:.0f} ms,"
            " streamed; full stream time, request to [DONE])"
        )
        print(
            f"{'streams':>7} {'direct p50':>11} {'via p50':>9} {'added p50':>14} "
            f"{'direct p99':>11} {'via p99':>9} {'added p99':>14} {'svc CPU/stream':>14}"
        )
        for n in LEVELS:
            rounds = max(1, (20 if quick else 60) // n) if n < 50 else (1 if quick else 3)
            direct = await level(client, direct_url, {}, n, rounds)
            cpu = cpu_seconds(service_pid)
            via = await level(client, via_url, auth, n, rounds)
            cpu_per_stream = (cpu_seconds(service_pid) - cpu) / len(via)
            record(f"service: CPU per stream at {n}", cpu_per_stream * 1000, "ms")
            row = []
            for q in (0.5, 0.99):
                d, v = pct(direct, q), pct(via, q)
                record(f"service: added p{q * 100:g} at {n} streams", (v - d) * 1000, "ms")
                row.append(
                    f"{d * 1000:9.1f}ms {v * 1000:7.1f}ms {(v - d) * 1000:+7.1f}ms"
                    f" {(v - d) / d:+6.1%}"
                )
            print(f"{n:>7} {row[0]} {row[1]} {cpu_per_stream * 1000:12.2f}ms")
            assert statistics.mean(via) > 0
        peak = record("service: peak RSS", peak_rss_mb(service_pid), "MB")
        print(f"service peak RSS after 200 streams: {peak:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds per level")
    args = parser.parse_args()
    home = setup_home()
    os.environ["CONSORTIUM_LAB_DEMO_DELAY"] = "0"
    server, base_url = start_server()
    service = None
    try:
        service, service_url = start_service(home)
        asyncio.run(main(base_url, service_url, service.pid, args.quick))
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
