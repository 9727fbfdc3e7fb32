"""The hub's gateway: ``consortium-lab gateway`` as JupyterHub's externally managed
``consortium-gateway`` service.

It is given what a hub-managed service would find in its environment (``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_SERVICE_PREFIX``), so its
settings need only say ``auth: hub``; it serves the offline demo models too
(``exclude_models: []``), so a hub without any provider key works and quotas apply to all.
``consortium-lab hub`` and the hub tests start it before the hub, on the port the hub
registers (``CONSORTIUM_HUB_GATEWAY_URL``).

In *one server, for real* it runs as its own Unix user, ``consortium-gateway``
(:func:`gateway_account`: a system user without login shell or home), from a 0700 folder that
user owns (:func:`write_gateway_folder`: its ``llm`` keys, settings, ledger and cache), so no
user server can read its keys, its files or ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GATEWAY_SERVICE",
    "GATEWAY_UNIX_USER",
    "GatewayAccount",
    "closed_parent",
    "gateway_account",
    "gateway_command",
    "gateway_prefix",
    "gateway_process_options",
    "hub_gateway_env",
    "hub_gateway_settings",
    "own_llm_setup",
    "require_reachable_python",
    "write_gateway_folder",
]

GATEWAY_SERVICE = "consortium-gateway"
GATEWAY_UNIX_USER = "consortium-gateway"


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


def gateway_command(config: Path, port: int, python: Path | None = None) -> list[str]:
    """``consortium-lab gateway`` with the settings file ``config`` on 127.0.0.1:``port``, the
    script beside ``python`` (default: this interpreter)."""
    script = Path(python or sys.executable).with_name("consortium-lab")
    return [str(script), "gateway", "--config", str(config), "--port", str(port)]


@dataclass(frozen=True)
class GatewayAccount:
    """The Unix user an isolated gateway runs as, and the private folder it owns."""

    name: str
    uid: int
    gid: int
    folder: Path


def gateway_account(folder: Path, name: str = GATEWAY_UNIX_USER) -> GatewayAccount:
    """Unix user ``name`` (created if missing: a system user with its own group, no login
    shell and no home) and ``folder``, created if missing, owned by it with mode 0700.

    Needs root. Every folder above ``folder`` must let others pass (``x``), or the gateway
    cannot reach its own files: a clear error says which one does not.
    """
    folder = folder.resolve()
    closed = closed_parent(folder)
    if closed is not None:
        raise RuntimeError(
            f"the gateway folder {folder} is below {closed}, which Unix user {name} cannot "
            "enter: choose a folder under one others may pass through (e.g. /var/lib)"
        )
    if not _unix_user_exists(name):
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "consortium hub gateway",
                name,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"could not create Unix user {name}: {done.stderr.strip()}")
    entry = pwd.getpwnam(name)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    os.chmod(folder, 0o700)
    return GatewayAccount(name, entry.pw_uid, entry.pw_gid, folder)


def closed_parent(path: Path) -> Path | None:
    """The first folder above ``path`` that other Unix users may not pass through (no ``x``
    for others), or ``None``: a process of another user can reach ``path``."""
    for parent in reversed(path.resolve().parents):
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return parent
    return None


def require_reachable_python(python: Path, name: str = GATEWAY_UNIX_USER) -> None:
    """Fail, naming the folder, when Unix user ``name`` could not run ``python`` (the real
    interpreter behind a venv's link): a deployment installs into a root-owned environment
    every user may read."""
    real = Path(os.path.realpath(python))
    closed = closed_parent(real)
    if closed is not None:
        raise RuntimeError(
            f"the Python environment at {real} is below {closed}, which Unix user {name} "
            "cannot enter: install consortium_lab into an environment every user may read"
        )


def _unix_user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _private_file(path: Path, text: str, owner: GatewayAccount | None) -> None:
    # Created 0600 before the secret is written, so it is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


def write_gateway_folder(
    folder: Path,
    settings: Mapping[str, Any],
    *,
    keys: Mapping[str, str] | None = None,
    llm_files: Mapping[str, str] | None = None,
    owner: GatewayAccount | None = None,
) -> Path:
    """The gateway's private folder: ``gateway.json`` (``settings``), and its ``llm`` folder
    with ``keys.json`` (``keys``) and ``llm_files`` (name → text, such as
    ``extra-openai-models.yaml``); every file 0600, folders 0700, owned by ``owner`` when
    given. Returns the settings file."""
    llm_dir = folder / "llm"
    for path in (folder, llm_dir):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)
    if keys is not None:
        _private_file(llm_dir / "keys.json", json.dumps(dict(keys), indent=2), owner)
    for name, text in (llm_files or {}).items():
        _private_file(llm_dir / name, text, owner)
    config = folder / "gateway.json"
    _private_file(config, json.dumps(dict(settings), indent=2), owner)
    return config


def own_llm_setup() -> dict[str, Any]:
    """This Unix user's ``llm`` keys and OpenAI-compatible model list, as
    :func:`write_gateway_folder`'s ``keys`` and ``llm_files``: what an isolated gateway is
    given a copy of."""
    import llm

    folder = llm.user_dir()
    keys_file, models_file = folder / "keys.json", folder / "extra-openai-models.yaml"
    try:
        keys = json.loads(keys_file.read_text()) if keys_file.is_file() else {}
    except ValueError:
        keys = None
    if not isinstance(keys, dict):
        raise RuntimeError(f"{keys_file} is not a JSON object of llm keys (see `llm keys set`)")
    return {
        # llm's keys.json starts with a "// Note" entry, not a key.
        "keys": {k: v for k, v in keys.items() if isinstance(v, str) and not k.startswith("//")},
        "llm_files": {models_file.name: models_file.read_text()} if models_file.is_file() else {},
    }


def gateway_process_options(
    base: Mapping[str, str], folder: Path, owner: GatewayAccount | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """The environment (``base`` with ``llm`` and the data folder inside ``folder``) and the
    extra ``subprocess.Popen`` arguments of a gateway run from ``folder``: as ``owner``, when
    given, with no supplementary groups and a umask that keeps what it writes its own."""
    env = dict(base)
    env.update(LLM_USER_PATH=str(folder / "llm"), CONSORTIUM_LAB_HOME=str(folder), HOME=str(folder))
    options: dict[str, Any] = {"cwd": str(folder), "umask": 0o077}
    if owner is not None:
        options.update(user=owner.uid, group=owner.gid, extra_groups=[])
    return env, options
