"""What the chart specs share: sizes, colours, and the few Altair helpers every chart uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

import altair as alt

__all__ = ["MUTED", "UNKNOWN_FILL", "UNKNOWN_STROKE", "ChartT", "Width", "inline", "named", "sized"]

Width = float | Literal["container"]
ChartT = TypeVar(
    "ChartT",
    alt.Chart,
    alt.LayerChart,
    alt.HConcatChart,
    alt.VConcatChart,
    alt.ConcatChart,
    alt.FacetChart,
    alt.RepeatChart,
)

UNKNOWN_FILL = "#d9d9d9"
UNKNOWN_STROKE = "#8c8c8c"
MUTED = "#8c8c8c"


def named(name: str) -> alt.Data:
    """A reference to the named dataset ``name`` (rows come later, by changeset or inline)."""
    return alt.Data(name=name)


def inline(rows: Sequence[Mapping[str, Any]]) -> alt.Data:
    """``rows`` embedded in the spec (built here, so ``alt.data_transformers`` never apply)."""
    return alt.Data(values=[dict(row) for row in rows])


def sized(chart: ChartT, width: Width | None, height: float | None) -> ChartT:
    """``chart`` with the width and height given (``None`` leaves Altair's default)."""
    props: dict[str, Any] = {}
    if width is not None:
        props["width"] = width
    if height is not None:
        props["height"] = height
    return chart.properties(**props) if props else chart
