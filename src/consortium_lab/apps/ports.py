"""Free loopback ports for the servers the apps start (Voila, the hub, its proxy, the gateway)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000
"""Ports below this are left alone: well-known and registered services live there."""


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that nothing listens on now, chosen outside the kernel's ephemeral range.

    A port handed out by ``bind(0)`` comes from the ephemeral range, the same range the kernel
    draws from for the local end of every outgoing connection: between the moment it is picked
    and the moment a server binds it (seconds, for a hub starting), any client on the machine can
    take it. A hub in CI died on exactly that. Ports outside that range are only ever taken by an
    explicit bind, and a random pick keeps parallel callers apart.
    """
    low, high = _ephemeral()
    spans = [(LOWEST, low - 1), (high + 1, 65535)]
    candidates = [(a, b) for a, b in spans if b - a >= 1000]
    for _ in range(200):
        if not candidates:
            break
        start, end = random.choice(candidates)
        port = random.randint(start, end)
        if port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
