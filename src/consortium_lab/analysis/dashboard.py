"""The usage-dashboard charts of your run log.

They summarise a frame shaped like :func:`consortium_lab.runs.to_pandas` (one row per member
response), aggregate in Python and embed their few rows inline (``{"values": [...]}``); like
every spec of :mod:`consortium_lab.analysis`, they reference no URL, CDN or font.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from consortium_lab.analysis.theme import MUTED, Width, inline, sized

__all__ = [
    "confidence_by_model_chart",
    "latency_by_model_chart",
    "models_used_chart",
    "runs_over_time_chart",
    "tokens_by_model_chart",
    "usage_dashboard",
]


def _require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(missing)}")


def _answers(frame: pd.DataFrame) -> pd.DataFrame:
    """Member answers only (peer reviews left out) when the frame has a ``stage``."""
    if "stage" in frame.columns:
        return frame[frame["stage"] == "answer"]
    return frame


def _done(frame: pd.DataFrame) -> pd.DataFrame:
    if "status" in frame.columns:
        return frame[frame["status"] == "done"]
    return frame


def runs_over_time_chart(
    frame: pd.DataFrame, *, title: str = "Runs per day", width: Width | None = 360
) -> alt.Chart:
    """Runs started per day (UTC), stacked by run status. Needs ``run_id`` and
    ``run_started_at`` (datetimes or ISO strings); ``run_status`` is optional."""
    _require(frame, "run_id", "run_started_at")
    runs = frame.drop_duplicates("run_id")
    days = pd.to_datetime(runs["run_started_at"], utc=True, format="ISO8601").dt.strftime(
        "%Y-%m-%d"
    )
    statuses = (
        runs["run_status"].fillna("unknown").astype(str)
        if "run_status" in runs.columns
        else pd.Series("unknown", index=runs.index)
    )
    counts = (
        pd.DataFrame({"day": days, "status": statuses})
        .groupby(["day", "status"])
        .size()
        .reset_index(name="runs")
    )
    rows = [
        {"day": str(row["day"]), "status": str(row["status"]), "runs": int(row["runs"])}
        for row in counts.to_dict("records")
    ]
    chart = (
        alt.Chart(inline(rows))
        .mark_bar()
        .encode(
            x=alt.X(
                "day:T",
                timeUnit="utcyearmonthdate",
                title="day",
                axis=alt.Axis(format="%b %d", tickCount={"interval": "day", "step": 1}),
            ),
            y=alt.Y("sum(runs):Q", title="runs", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("status:N", title="status"),
            tooltip=[
                alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day"),
                alt.Tooltip("status:N"),
                alt.Tooltip("runs:Q"),
            ],
        )
        .properties(title=title)
    )
    return sized(chart, width, None)


def models_used_chart(
    frame: pd.DataFrame, *, title: str = "Answers per model", width: Width | None = 360
) -> alt.Chart:
    """Member answers per model (peer reviews left out), stacked by outcome (``done`` or
    ``failed``). Needs ``model``; ``stage`` and ``status`` are used when present."""
    _require(frame, "model")
    answers = _answers(frame)
    status = (
        answers["status"].fillna("unknown").astype(str)
        if "status" in answers.columns
        else pd.Series("done", index=answers.index)
    )
    counts = pd.DataFrame({"model": answers["model"].astype(str), "status": status})
    sizes = counts.groupby(["model", "status"]).size().reset_index(name="answers")
    rows = [
        {"model": str(row["model"]), "status": str(row["status"]), "answers": int(row["answers"])}
        for row in sizes.to_dict("records")
    ]
    chart = (
        alt.Chart(inline(rows))
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title="model", sort="-x"),
            x=alt.X("sum(answers):Q", title="answers", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color(
                "status:N",
                title="outcome",
                scale=alt.Scale(domain=["done", "failed"], range=["#4c78a8", "#e45756"]),
            ),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("status:N"), alt.Tooltip("answers:Q")],
        )
        .properties(title=title)
    )
    return sized(chart, width, None)


def confidence_by_model_chart(
    frame: pd.DataFrame, *, title: str = "Mean confidence per model", width: Width | None = 360
) -> alt.Chart:
    """The mean of each model's own stated confidence over its successful answers (answers
    with no stated confidence left out), on [0, 1], with the number of answers it averages in
    the tooltip. Needs ``model`` and ``confidence``."""
    _require(frame, "model", "confidence")
    answers = _done(_answers(frame))
    stated = pd.DataFrame(
        {
            "model": answers["model"].astype(str),
            "confidence": pd.to_numeric(answers["confidence"], errors="coerce"),
        }
    ).dropna()
    grouped = stated.groupby("model")["confidence"].agg(["mean", "count"])
    rows = [
        {"model": str(model), "mean_confidence": float(row["mean"]), "answers": int(row["count"])}
        for model, row in grouped.iterrows()
    ]
    chart = (
        alt.Chart(inline(rows))
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title="model", sort="-x"),
            x=alt.X(
                "mean_confidence:Q",
                title="mean confidence",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("mean_confidence:Q", title="mean confidence", format=".0%"),
                alt.Tooltip("answers:Q"),
            ],
        )
        .properties(title=title)
    )
    return sized(chart, width, None)


def latency_by_model_chart(
    frame: pd.DataFrame, *, title: str = "Latency per model", width: Width | None = 360
) -> alt.LayerChart:
    """Each model's call latency in seconds (every stage; calls without a latency left out),
    summarised in Python as a box plot: a rule from the fastest to the slowest call, a bar
    from the first to the third quartile and a tick at the median. Needs ``model`` and
    ``latency_ms``."""
    _require(frame, "model", "latency_ms")
    latency = pd.DataFrame(
        {
            "model": frame["model"].astype(str),
            "seconds": pd.to_numeric(frame["latency_ms"], errors="coerce") / 1000.0,
        }
    ).dropna()
    rows: list[dict[str, Any]] = []
    for model, group in latency.groupby("model"):
        seconds = group["seconds"]
        rows.append(
            {
                "model": str(model),
                "min": float(seconds.min()),
                "q1": float(seconds.quantile(0.25)),
                "median": float(seconds.median()),
                "q3": float(seconds.quantile(0.75)),
                "max": float(seconds.max()),
                "calls": int(seconds.count()),
            }
        )
    base = alt.Chart(inline(rows)).encode(y=alt.Y("model:N", title="model"))
    tooltip = [
        alt.Tooltip("model:N"),
        alt.Tooltip("median:Q", title="median (s)", format=".2f"),
        alt.Tooltip("q1:Q", title="Q1 (s)", format=".2f"),
        alt.Tooltip("q3:Q", title="Q3 (s)", format=".2f"),
        alt.Tooltip("min:Q", title="fastest (s)", format=".2f"),
        alt.Tooltip("max:Q", title="slowest (s)", format=".2f"),
        alt.Tooltip("calls:Q"),
    ]
    whisker = base.mark_rule(color=MUTED).encode(
        x=alt.X("min:Q", title="latency (s)"), x2=alt.X2("max:Q"), tooltip=tooltip
    )
    box = base.mark_bar(size=14).encode(x=alt.X("q1:Q"), x2=alt.X2("q3:Q"), tooltip=tooltip)
    median = base.mark_tick(color="white", thickness=2, size=14).encode(
        x=alt.X("median:Q"), tooltip=tooltip
    )
    chart = alt.LayerChart(layer=[whisker, box, median]).properties(title=title)
    return sized(chart, width, None)


def tokens_by_model_chart(
    frame: pd.DataFrame, *, title: str = "Tokens per model", width: Width | None = 360
) -> alt.Chart:
    """Total input and output tokens per model (every stage; calls whose provider reported no
    usage count as 0), stacked. Needs ``model``, ``input_tokens`` and ``output_tokens``."""
    _require(frame, "model", "input_tokens", "output_tokens")
    tokens = pd.DataFrame(
        {
            "model": frame["model"].astype(str),
            "input": pd.to_numeric(frame["input_tokens"], errors="coerce").fillna(0),
            "output": pd.to_numeric(frame["output_tokens"], errors="coerce").fillna(0),
        }
    )
    sums = tokens.groupby("model")[["input", "output"]].sum()
    rows = [
        {"model": str(model), "direction": direction, "tokens": int(row[direction])}
        for model, row in sums.iterrows()
        for direction in ("input", "output")
    ]
    chart = (
        alt.Chart(inline(rows))
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title="model", sort="-x"),
            x=alt.X("sum(tokens):Q", title="tokens"),
            color=alt.Color("direction:N", title="tokens"),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("direction:N"), alt.Tooltip("tokens:Q")],
        )
        .properties(title=title)
    )
    return sized(chart, width, None)


def usage_dashboard(frame: pd.DataFrame) -> alt.VConcatChart:
    """The five usage charts of a :func:`consortium_lab.runs.to_pandas` frame in one spec:
    runs over time and answers per model, mean confidence and latency per model, tokens per
    model. Note that the frame holds member calls only: arbiter calls are not in it."""
    # Each chart colours by its own field (status, outcome, direction): the colour scales must
    # be independent at every level of nesting, or one chart's domain blanks another's marks.
    return alt.vconcat(
        alt.hconcat(runs_over_time_chart(frame), models_used_chart(frame)).resolve_scale(
            color="independent"
        ),
        alt.hconcat(confidence_by_model_chart(frame), latency_by_model_chart(frame)).resolve_scale(
            color="independent"
        ),
        tokens_by_model_chart(frame),
    ).resolve_scale(color="independent")
