"""The two lean transports the issue weighs, side by side: CPU per stream.

``sdk-raw``: the openai SDK's raw streaming response (``with_streaming_response``), its lines
parsed with orjson; ``aiohttp``: one shared aiohttp session with a line splitter and orjson (what
``gateway/lean.py`` does); ``sdk``: the SDK's parsed chunks, as ``llm`` streams today. Each reads
the same loopback streams (``loopback_server.py``), 50 at once, for several rounds.

Run: ``.venv/bin/python benchmarks/bench_transport.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson

from figures import record
from floor import floor_session, floor_stream

from bench_engine import setup_home, start_server

MODEL, STREAMS, ROUNDS = "bench-a", 50, 4
MESSAGES = [{"role": "user", "content": "Q"}]


async def sdk_raw(client, url: str) -> None:  # type: ignore[no-untyped-def]
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as response:
        async for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                orjson.loads(line[6:])


async def sdk(client, url: str) -> None:  # type: ignore[no-untyped-def]
    async for _chunk in await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    ):
        pass


async def measure(name: str, one, target) -> float:  # type: ignore[no-untyped-def]
    await asyncio.gather(*(one(target) for _ in range(5)))  # warm
    cpu0 = time.process_time()
    for _ in range(ROUNDS):
        await asyncio.gather(*(one(target) for _ in range(STREAMS)))
    per = (time.process_time() - cpu0) / (STREAMS * ROUNDS) * 1000
    record(f"transport: CPU per stream, {name}", per, "ms")
    print(f"{name:<8} CPU per stream {per:6.2f} ms")
    return per


async def main(base_url: str) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="DUMMY_KEY", max_retries=0)
    url = base_url.rstrip("/") + "/chat/completions"
    async with floor_session() as session:
        a = await measure("aiohttp", lambda s: floor_stream(s, url, MODEL, "Q"), session)
    raw = await measure("sdk-raw", lambda c: sdk_raw(c, url), client)
    full = await measure("sdk", lambda c: sdk(c, url), client)
    print(f"sdk-raw / aiohttp {raw / a:.2f} x; sdk / aiohttp {full / a:.2f} x")
    await client.close()


if __name__ == "__main__":
    setup_home()
    server, base_url = start_server()
    try:
        asyncio.run(main(base_url))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
