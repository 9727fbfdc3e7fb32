"""The front-end bundle's files, and ``VegaChart``: any Altair chart rendered offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

__all__ = ["STATIC", "VegaChart", "asset"]

STATIC = Path(__file__).resolve().parent.parent / "static"
"""Where ``widgets/build.mjs`` writes the bundle (``pip install`` runs it)."""

_MISSING_BUNDLE = """
export default {
  render({ el }) {
    el.textContent = "consortium_lab: the widget's front end is not built. Run `npm ci && "
      + "npm run build` in widgets/ (pip install does it through the build hook).";
  },
};
"""


def asset(name: str) -> Path | str:
    """The built front-end file, or a stand-in that says the bundle is missing."""
    path = STATIC / name
    if path.is_file():
        return path
    return _MISSING_BUNDLE if name.endswith(".js") else ""


class VegaChart(anywidget.AnyWidget):
    """An Altair chart (or a Vega-Lite dict) rendered by the bundled vega-embed: works offline,
    unlike renderers that load Vega from a CDN. ``VegaChart(chart)`` and display it."""

    _esm = asset("chart.js")
    _css = asset("chart.css")

    spec = t.Dict().tag(sync=True)

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        spec = chart.to_dict() if hasattr(chart, "to_dict") else dict(chart)
        super().__init__(spec=spec, **kwargs)
