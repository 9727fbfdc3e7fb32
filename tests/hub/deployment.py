"""A hub with its gateway: ``consortium-lab gateway`` registered as the hub's externally
managed ``consortium-gateway`` service (auth ``hub``, served under
``/services/consortium-gateway/``), started before the hub on the hub's future API port.

The gateway gets what a hub-managed service would get in its environment
(``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_NAME``,
``JUPYTERHUB_SERVICE_PREFIX``); its own llm folder holds the provider key, which no user
server may see.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import test_service as svc
from consortium_lab.apps.hub import free_port

from .conftest import OPENER, Hub, start_hub, stop_hub

SERVICE = "consortium-gateway"
PREFIX = f"/services/{SERVICE}/"


@dataclass
class Deployment:
    hub: Hub
    gateway: svc.GatewayProcess
    gateway_token: str
    alice_token: str
    provider_key: str

    @property
    def gateway_base(self) -> str:
        """The gateway's own URL with its prefix (no trailing slash)."""
        return self.gateway.url + PREFIX.rstrip("/")

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
        return self.call("GET", self.gateway_base + path, token)

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
    """The gateway (offering the offline demo models), then the hub that registers it."""
    root.mkdir(parents=True, exist_ok=True)
    hub_port = free_port()
    gateway_token = secrets.token_hex(32)
    alice_token = secrets.token_hex(32)
    provider_key = "sk-" + secrets.token_hex(24)
    llm_dir = root / "gateway-llm"
    llm_dir.mkdir()
    (llm_dir / "keys.json").write_text(json.dumps({"openai": provider_key}))
    config = root / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "auth": "hub",
                "hub_cache_ttl": cache_ttl,
                # Only the offline demo models: nothing may leave the machine.
                "models": ["demo-*"],
                "exclude_models": [],
                "ledger": str(root / "gateway" / "ledger.db"),
                **gateway_settings,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(
        LLM_USER_PATH=str(llm_dir),
        CONSORTIUM_LAB_HOME=str(root / "gateway-home"),
        CONSORTIUM_GATEWAY_ADMIN_TOKENS=svc.ADMIN,
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub_port}/hub/api",
        JUPYTERHUB_API_TOKEN=gateway_token,
        JUPYTERHUB_SERVICE_NAME=SERVICE,
        JUPYTERHUB_SERVICE_PREFIX=PREFIX,
        CONSORTIUM_LAB_DEMO_DELAY="0.01",
    )
    gateway = svc.GatewayProcess(config, env, root / "gateway.log").start()
    try:
        hub = start_hub(
            root / "hub",
            f"--JupyterHub.api_tokens={alice_token}=alice",
            CONSORTIUM_HUB_HUB_PORT=str(hub_port),
            CONSORTIUM_HUB_GATEWAY_URL=gateway.url,
            CONSORTIUM_HUB_GATEWAY_TOKEN=gateway_token,
        )
    except BaseException:
        gateway.stop()
        raise
    return Deployment(hub, gateway, gateway_token, alice_token, provider_key)


def stop_deployment(deployment: Deployment) -> None:
    stop_hub(deployment.hub)
    deployment.gateway.stop()
