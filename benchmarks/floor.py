"""The floor every benchmark figure is a ratio to: the least work that does the same I/O.

- :func:`floor_run`: what one consortium run must do on the wire, done with plain aiohttp, a
  small SSE line splitter and orjson: per iteration the four members' streams at once, then
  the arbiter's, for two iterations (10 streams, the same SSE events as an engine run).
- ``python benchmarks/floor.py proxy BASE_URL``: the floor proxy, an aiohttp server that relays
  ``POST /v1/chat/completions`` byte for byte to ``BASE_URL`` (what the gateway service would
  cost if it did nothing but relay). It prints its URL on the first line and stops when
  standard input closes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import orjson

from loopback_server import ARBITER, MEMBERS


async def floor_stream(session: aiohttp.ClientSession, url: str, model: str, prompt: str) -> str:
    """One streamed chat completion, read to ``[DONE]``; returns its text."""
    body = orjson.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    )
    text: list[str] = []
    buffer = b""
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        async for piece in r.content.iter_any():
            buffer += piece
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    return "".join(text)
                choices = orjson.loads(data).get("choices")
                if choices and (content := choices[0]["delta"].get("content")):
                    text.append(content)
    return "".join(text)


async def floor_run(session: aiohttp.ClientSession, base_url: str) -> None:
    """The I/O of one two-iteration run: members at once, then the arbiter, twice."""
    url = base_url.rstrip("/") + "/chat/completions"
    synthesis = "Q"
    for _ in range(2):
        await asyncio.gather(*(floor_stream(session, url, m, "Q") for m in MEMBERS))
        await floor_stream(session, url, ARBITER[0], synthesis)
        synthesis = "Iteration 1 synthesis"


def floor_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def _proxy(base_url: str) -> None:
    from aiohttp import web

    target = base_url.rstrip("/") + "/chat/completions"
    session = floor_session()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with session.post(
            target, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")},
            )
            await response.prepare(request)
            try:
                async for piece in upstream.content.iter_any():
                    await response.write(piece)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client left after [DONE], before the end of the body
            return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: Any = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await session.close()
    await runner.cleanup()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "proxy":
        sys.exit("usage: floor.py proxy BASE_URL")
    asyncio.run(_proxy(sys.argv[2]))


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; NaN elsewhere)."""
    import os
    from pathlib import Path

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
