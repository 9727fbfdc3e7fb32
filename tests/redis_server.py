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

from consortium_lab.apps.ports import free_port

from helpers import stop_process

_CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, or ``None`` when it is not installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def _ping(port: int, password: str | None = None, tls_ca: Path | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            sock = raw
            if tls_ca is not None:
                import ssl

                context = ssl.create_default_context(cafile=str(tls_ca))
                sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            if password is not None:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def make_tls_files(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (``cert.pem``, ``key.pem``) made with openssl;
    the certificate is its own CA. Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` is its ``redis://`` URL."""

    def __init__(
        self,
        binary: str,
        folder: Path,
        *,
        password: str | None = None,
        tls: Path | None = None,
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.password = password
        self.tls = tls
        """A folder with ``cert.pem`` and ``key.pem`` (:func:`make_tls_files`): TLS only."""
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("redis-server not started")
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            ca = self.tls / "cert.pem"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _options(self, port: int) -> list[str]:
        options = ["--port", str(port)]
        if self.password:
            options += ["--requirepass", self.password]
        if self.tls is not None:
            cert, key = str(self.tls / "cert.pem"), str(self.tls / "key.pem")
            options = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", cert]
            options += ["--tls-key-file", key, "--tls-ca-cert-file", cert]
            options += ["--tls-auth-clients", "no"]
            if self.password:
                options += ["--requirepass", self.password]
        return options

    def start(self, timeout: float = 15.0, *, port: int | None = None) -> RedisServer:
        """Start on a free port (or ``port``: a restart where it was)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        for _ in range(3):  # another process may take the free port first: try another
            chosen = port or free_port()
            process = subprocess.Popen(
                [
                    self.binary,
                    *self._options(chosen),
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
                tls_ca = self.tls / "cert.pem" if self.tls is not None else None
                if _ping(chosen, self.password, tls_ca):
                    self.port, self.process = chosen, process
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
