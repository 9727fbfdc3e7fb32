"""The front-end bundle's files, and ``VegaChart`` / ``VegaChartGrid``: Altair charts rendered
offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

__all__ = ["STATIC", "VegaChart", "VegaChartGrid", "asset"]

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


class VegaChartGrid(anywidget.AnyWidget):
    """Several Altair charts (or Vega-Lite dicts) in one widget, in a grid that wraps on narrow
    screens: ``VegaChartGrid([chart1, chart2])``. The page loads the chart bundle once for all
    of them (a ``VegaChart`` each would load it once each), and draws them in order, the first
    one first."""

    _esm = asset("chart.js")
    _css = asset("chart.css")

    specs = t.List(t.Dict(), help="The charts' Vega-Lite specs, in the order shown.").tag(sync=True)

    def __init__(self, charts: Any, **kwargs: Any) -> None:
        specs = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in charts]
        super().__init__(specs=specs, **kwargs)
