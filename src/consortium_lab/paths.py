"""Where consortium_lab keeps its files, and the environment variables that move them.

- data folder: ``$XDG_DATA_HOME/consortium-lab`` (``~/.local/share/consortium-lab``);
  override with ``CONSORTIUM_LAB_HOME``.
- run log: ``<data folder>/runs.db``; override with ``CONSORTIUM_LAB_DB`` or an argument.
- llm-consortium's database (saved configs):
  ``click.get_app_dir("io.datasette.llm")/consortium_logs.db``; no override, because upstream
  ignores ``LLM_USER_PATH``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The user's consortium_lab data folder (created on first use)."""
    env = os.environ.get("CONSORTIUM_LAB_HOME")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "share"
        )
        path = Path(base) / "consortium-lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_db_path() -> Path:
    """The default per-user run log: ``CONSORTIUM_LAB_DB`` or ``<data folder>/runs.db``."""
    env = os.environ.get("CONSORTIUM_LAB_DB")
    if env:
        path = Path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return data_dir() / "runs.db"


def upstream_dir() -> Path:
    """llm-consortium's data folder. It uses ``click.get_app_dir`` and ignores ``LLM_USER_PATH``;
    we resolve it the same way so configs saved here show up in ``llm consortium list``."""
    import click

    path = Path(click.get_app_dir("io.datasette.llm"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def upstream_db_path() -> Path:
    """llm-consortium's database file, which holds the ``consortium_configs`` table."""
    return upstream_dir() / "consortium_logs.db"
