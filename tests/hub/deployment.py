"""A hub (with its gateway, see conftest) and an API token of alice's, to drive the hub's API
and the gateway as she would."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consortium_lab.apps.hub_gateway import GATEWAY_SERVICE as SERVICE
from consortium_lab.apps.hub_gateway import gateway_prefix

from .conftest import OPENER, Hub, start_hub, stop_hub

PREFIX = gateway_prefix(SERVICE)


@dataclass
class Deployment:
    hub: Hub
    alice_token: str

    def call(
        self, method: str, url: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """Status and JSON body (``None`` if not JSON) of a request with ``token``."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with OPENER.open(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def gw(self, path: str, token: str | None) -> tuple[int, Any]:
        return self.call("GET", self.hub.gateway.url + path, token)

    def hub_api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The hub's API as alice (her API token holds her role's scopes)."""
        return self.call(method, self.hub.api + path, self.alice_token, body)

    def start_server(self, user: str = "alice", timeout: float = 240) -> None:
        status, body = self.hub_api("POST", f"/users/{user}/server")
        assert status in (201, 202, 400), (status, body)  # 400: already running
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, model = self.hub_api("GET", f"/users/{user}")
            server = (model or {}).get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{user}'s server never became ready:\n{self.hub.log_tail()}")

    def stop_server(self, user: str = "alice", timeout: float = 120) -> None:
        self.hub_api("DELETE", f"/users/{user}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, model = self.hub_api("GET", f"/users/{user}")
            if not (model or {}).get("servers"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{user}'s server never stopped:\n{self.hub.log_tail()}")


def start_deployment(root: Path, *, cache_ttl: float = 2.0, **gateway_settings: Any) -> Deployment:
    """A hub whose gateway remembers token checks for ``cache_ttl`` seconds, and alice's token."""
    alice_token = secrets.token_hex(32)
    hub = start_hub(
        root,
        f"--JupyterHub.api_tokens={alice_token}=alice",
        gateway_settings={"hub_cache_ttl": cache_ttl, **gateway_settings},
    )
    return Deployment(hub, alice_token)


def stop_deployment(deployment: Deployment) -> None:
    stop_hub(deployment.hub)
