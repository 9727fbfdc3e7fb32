"""`consortium-lab hub`: starts the loopback provider and a *try it* hub, prints the URL and
the test users, stops everything on SIGTERM; one line and exit 1 without node or on a taken
port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consortium_lab.apps.ports import free_port

from .conftest import get, needs_node


class _Stop(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check, not to follow."""

    def redirect_request(self, *args: Any) -> None:
        return None


NO_REDIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), _Stop())
CLI = str(Path(sys.executable).with_name("consortium-lab"))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "hub", *args], capture_output=True, text=True, timeout=120, env=env)


def test_without_node_one_line_and_exit_1(tmp_path: Path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    done = run_cli("--data-dir", str(tmp_path / "data"), env=env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "node and npm not found" in done.stderr


def test_a_taken_port_one_line_and_exit_1(tmp_path: Path):
    needs_node()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_cli("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"consortium-lab hub: port {port} on 127.0.0.1 is taken: choose another with --port"
    )


def test_starts_prints_the_url_and_users_and_stops_everything_on_sigterm(tmp_path: Path):
    needs_node()
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "hub", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while not any("Press Ctrl+C" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            line = proc.stdout.readline()
            assert line, "".join(lines) + (tmp_path / "data" / "hub.log").read_text()[-3000:]
            lines.append(line)
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in text
        assert re.search(r"alice\s+password \S+", text) and re.search(r"bob\s+password \S+", text)
        assert "no isolation between users" in text
        assert get(f"http://127.0.0.1:{port}/hub/login")[0] == 200
        # The gateway runs, as the hub's service, behind the hub's proxy.
        status, body = get(f"http://127.0.0.1:{port}/services/consortium-gateway/health")
        assert status == 200 and '"ledger": "ok"' in body, body
        # So does the admin analytics: an anonymous visit is sent to the hub's OAuth (without
        # the service the proxy would answer 503).
        analytics = f"http://127.0.0.1:{port}/services/consortium-analytics/"
        assert f"Admin analytics (alice): {analytics}" in text
        with pytest.raises(urllib.error.HTTPError) as first:
            NO_REDIRECT.open(analytics, timeout=30)
        assert first.value.code == 302
        assert "/hub/api/oauth2/authorize" in first.value.headers["Location"]
        assert first.value.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    finally:
        os.killpg(proc.pid, signal.SIGTERM) if proc.poll() is None else None
        code = proc.wait(90)
    assert code == 0
    # Everything it started is gone: nothing listens on the proxy's port (SO_REUSEADDR: a
    # closed connection's TIME_WAIT is no listener).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_gateway_folder_without_isolated_one_line_and_exit_1(tmp_path: Path):
    done = run_cli("--gateway-dir", str(tmp_path / "gw"))
    assert done.returncode == 1
    assert done.stderr.strip() == "consortium-lab hub: --gateway-dir needs --isolated"
