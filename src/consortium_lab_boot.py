"""Start-up guard against two llm-consortium 0.8.0 defects, installed as a ``.pth`` hook.

llm-consortium, when imported, opens a log file in ``click.get_app_dir("io.datasette.llm")``
(crashing on a fresh home where that folder does not exist yet) and adds handlers to the root
logger and sets its level. ``llm`` imports plugins in an order nobody controls, so a fix inside
our own plugin could run too late. Python runs ``.pth`` files at interpreter start-up, before any
plugin: this module installs a meta-path finder that watches for exactly one import,
``llm_consortium``, creates the folder first and restores the root logger afterwards. It costs
one ``sys.meta_path`` entry and imports nothing heavy. See ``docs/upstream-defects.md``.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from types import ModuleType

_WATCHED = "llm_consortium"


def upstream_log_dir() -> str:
    """The folder click.get_app_dir("io.datasette.llm") gives on POSIX (no click import here)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "io.datasette.llm")


def prepare_upstream_dir() -> None:
    """Create llm-consortium's log folder so its import-time ``FileHandler`` cannot crash."""
    if sys.platform.startswith("win") or sys.platform == "darwin":
        import click  # other platforms: let click compute it exactly

        path = click.get_app_dir("io.datasette.llm")
    else:
        path = upstream_log_dir()
    # A read-only home: upstream then fails on its own terms; nothing better to do here.
    with contextlib.suppress(OSError):
        os.makedirs(path, exist_ok=True)


class _RootLoggerGuard(importlib.abc.Loader):
    """Wraps llm_consortium's loader: snapshot the root logger, run the module, restore it."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> object:
        # Everything else (get_resource_reader for importlib.resources, is_package,
        # get_filename…) is the wrapped loader's.
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        prepare_upstream_dir()
        try:
            self._loader.exec_module(module)
        finally:
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
                    # Upstream's FileHandler keeps consortium.log open for nothing.
                    handler.close()
            root.setLevel(level)
            # Upstream had silenced its own warnings by raising the root level; a NullHandler
            # keeps them quiet (the library convention) while an app that configures logging
            # still receives them through propagation.
            upstream = logging.getLogger(_WATCHED)
            if not upstream.handlers:
                upstream.addHandler(logging.NullHandler())


class _UpstreamFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RootLoggerGuard(spec.loader)
                return spec
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, _UpstreamFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _UpstreamFinder())
