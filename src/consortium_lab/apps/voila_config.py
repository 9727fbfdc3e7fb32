"""Voila's settings for the chat app that do not fit a command line, and the app notebooks'
own trust: written as files beside the command that reads them (see
:func:`consortium_lab.apps.voila.voila_command`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from consortium_lab.paths import data_dir

LANDING = "chat.ipynb"
"""The app's landing page."""
DASHBOARD = "dashboard.ipynb"
"""The personal dashboard, linked from the chat."""
DASHBOARD_POOL_SIZE = 1
"""Preheated dashboard kernels whenever the chat is preheated: one page at a time opens it,
and a kernel that has imported pandas and altair costs ~150 MB."""


def voila_settings(
    pool_size: int, dashboard_pool_size: int = DASHBOARD_POOL_SIZE
) -> dict[str, dict[str, Any]]:
    """Voila's settings that are dicts, by class: the tornado settings, and the kernel pools
    when ``pool_size`` > 0 (the chat's; the dashboard gets ``dashboard_pool_size``)."""
    tornado = {
        # Voila's page shuts its kernel down on unload with a beacon that cannot carry an XSRF
        # token, and no _xsrf cookie is ever set, so the request is refused (403) and every
        # closed page leaves its kernel running (voila-dashboards/voila#1458). Standalone
        # Voila serves no endpoint that runs code, so the check guards nothing worth the leak.
        "disable_check_xsrf": True,
        # jupyter_server's default (3 x the 30 s ping interval) is refused by tornado >= 6.5,
        # which says so on every page open; a missed pong within one interval closes the socket.
        "ws_ping_timeout": 30_000,
    }
    config: dict[str, Any] = {"Voila": {"tornado_settings": tornado}}
    if pool_size > 0:
        # The quickstart is not preheated: it would run a consortium up front.
        pools = {
            "default": {"pool_size": 0},
            LANDING: {"pool_size": pool_size},
            DASHBOARD: {"pool_size": max(0, dashboard_pool_size)},
        }
        config["VoilaKernelManager"] = {"kernel_pools_config": pools}
    return config


def command_settings(command: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`voila_settings` for a :func:`voila_command` built with ``side_files=False``: its
    kernel pools match the command's ``--pool_size``."""
    sizes = [a.split("=", 1)[1] for a in command if a.startswith("--pool_size=")]
    preheated = "--preheat_kernel=True" in command
    return voila_settings(int(sizes[-1]) if sizes and preheated else 0)


def config_file_options(config: dict[str, dict[str, Any]]) -> list[str]:
    """Voila options reading a ``voila.json`` written for this command line with ``config``
    (traitlets deprecates a dict given as JSON on the command line, and turns ``key=value``
    items into strings). Voila's usual config folders are searched after it."""
    from jupyter_core.paths import jupyter_config_path

    pools = config.get("VoilaKernelManager", {}).get("kernel_pools_config", {})
    sizes = [pools.get(name, {}).get("pool_size", 0) for name in (LANDING, DASHBOARD)]
    folder = data_dir() / "voila-config" / ("pool-" + "-".join(map(str, sizes)))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "voila.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    paths = [str(folder), os.getcwd(), *jupyter_config_path()]
    return [f"--Voila.config_file_paths={path}" for path in paths]


def trust_notebooks(root: Path) -> list[str]:
    """Sign the app notebooks under ``root`` with a notary of their own and return the Voila
    options that use it, so Voila does not warn "Notebook … is not trusted" on every page.

    The app's notebooks are ours (and Voila only shows their outputs), so trusting them is
    what the user wants; the user's own Jupyter trust database is left untouched."""
    import nbformat
    from nbformat.sign import NotebookNotary

    folder = data_dir() / "voila-trust"
    folder.mkdir(parents=True, exist_ok=True)
    secret, db = folder / "notebook_secret", folder / "nbsignatures.db"
    notary = NotebookNotary(secret_file=str(secret), db_file=str(db))
    for path in sorted(root.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if not notary.check_signature(notebook):
            notary.sign(notebook)
    notary.store.close()
    return [f"--NotebookNotary.secret_file={secret}", f"--NotebookNotary.db_file={db}"]
