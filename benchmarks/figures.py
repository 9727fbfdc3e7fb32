"""The figures a benchmark reports, kept for ``compare.py`` as well as printed.

A benchmark calls :func:`record` for each figure it prints. When ``BENCH_JSON`` names a file,
the figures are written there as JSON at exit, so ``benchmarks/compare.py`` can run the same
benchmark against two commits and set them side by side.
"""

from __future__ import annotations

import atexit
import json
import os
from typing import Literal

_FIGURES: dict[str, dict[str, object]] = {}


def record(
    name: str, value: float, unit: str, better: Literal["lower", "higher"] = "lower"
) -> float:
    """Keep one figure (``better`` says which way is an improvement); returns ``value``."""
    _FIGURES[name] = {"value": float(value), "unit": unit, "better": better}
    return value


def _write() -> None:
    path = os.environ.get("BENCH_JSON")
    if path and _FIGURES:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(_FIGURES, out, indent=1)


atexit.register(_write)
