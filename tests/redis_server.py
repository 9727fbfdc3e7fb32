"""A real ``redis-server`` for the Redis tests: found on PATH, run on a free loopback port.

Persistence is off (``--save ''``, ``--appendonly no``), it binds 127.0.0.1 only, and
:meth:`RedisServer.stop` (or leaving the ``with`` block) ends it. Readiness is a ``PING``
answered ``+PONG`` over a plain socket, so this module needs no Redis client.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from helpers import stop_process

_CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, or ``None`` when it is not installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` is its ``redis://`` URL."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("redis-server not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        for _ in range(3):  # another process may take the free port first: try another
            port = _free_port()
            process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.folder),
                    "--logfile", str(log),
                    "--daemonize", "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                if _ping(port):
                    self.port, self.process = port, process
                    return self
                time.sleep(0.02)
            with contextlib.suppress(Exception):
                process.kill()
                process.wait(5)
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start:\n{detail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, 10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
