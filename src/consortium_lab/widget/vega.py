"""The front-end bundle's files, and ``VegaChart`` / ``VegaChartGrid``: Altair charts rendered
offline."""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets as t

from consortium_lab.widget.assets import STATIC, asset, bundle

__all__ = ["STATIC", "VegaChart", "VegaChartGrid", "asset"]


class VegaChart(anywidget.AnyWidget):
    """An Altair chart (or a Vega-Lite dict) rendered by the bundled vega-embed: works offline,
    unlike renderers that load Vega from a CDN. ``VegaChart(chart)`` and display it."""

    _esm, _css = bundle("chart")

    spec = t.Dict().tag(sync=True)

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        spec = chart.to_dict() if hasattr(chart, "to_dict") else dict(chart)
        super().__init__(spec=spec, **kwargs)


class VegaChartGrid(anywidget.AnyWidget):
    """Several Altair charts (or Vega-Lite dicts) in one widget, in a grid that wraps on narrow
    screens: ``VegaChartGrid([chart1, chart2])``. The page loads the chart bundle once for all
    of them (a ``VegaChart`` each would load it once each), and draws them in order, the first
    one first."""

    _esm, _css = bundle("chart")

    specs = t.List(t.Dict(), help="The charts' Vega-Lite specs, in the order shown.").tag(sync=True)

    def __init__(self, charts: Any, **kwargs: Any) -> None:
        specs = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in charts]
        super().__init__(specs=specs, **kwargs)
