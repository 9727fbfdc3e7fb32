"""The hub's gateway: ``consortium-lab gateway`` as JupyterHub's externally managed
``consortium-gateway`` service.

It is given what a hub-managed service would find in its environment (``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_SERVICE_PREFIX``), so its
settings need only say ``auth: hub``; it serves the offline demo models too
(``exclude_models: []``), so a hub without any provider key works and quotas apply to all.
``consortium-lab hub`` and the hub tests start it before the hub, on the port the hub
registers (``CONSORTIUM_HUB_GATEWAY_URL``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "GATEWAY_SERVICE",
    "gateway_command",
    "gateway_prefix",
    "hub_gateway_env",
    "hub_gateway_settings",
]

GATEWAY_SERVICE = "consortium-gateway"


def gateway_prefix(name: str = GATEWAY_SERVICE) -> str:
    """The URL prefix the hub's proxy gives the service ``name``: ``/services/<name>/``."""
    return f"/services/{name}/"


def hub_gateway_settings(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The gateway's settings in a hub: hub tokens, the demo models offered too, its ledger
    (and cache beside it) in ``data_dir``."""
    return {
        "auth": "hub",
        "exclude_models": [],
        "ledger": str(data_dir / "ledger.db"),
        **overrides,
    }


def hub_gateway_env(
    base: Mapping[str, str], *, hub_api_url: str, api_token: str, name: str = GATEWAY_SERVICE
) -> dict[str, str]:
    """``base`` (the gateway's own environment: its provider keys) with the hub's service
    variables in place of any the caller had."""
    env = {k: v for k, v in base.items() if not k.startswith("JUPYTERHUB_")}
    env.update(
        JUPYTERHUB_API_URL=hub_api_url,
        JUPYTERHUB_API_TOKEN=api_token,
        JUPYTERHUB_SERVICE_NAME=name,
        JUPYTERHUB_SERVICE_PREFIX=gateway_prefix(name),
    )
    return env


def gateway_command(config: Path, port: int) -> list[str]:
    """``consortium-lab gateway`` with the settings file ``config`` on 127.0.0.1:``port``."""
    script = Path(sys.executable).with_name("consortium-lab")
    return [str(script), "gateway", "--config", str(config), "--port", str(port)]
