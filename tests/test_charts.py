"""Chart specs: valid Vega-Lite, named datasets, no remote resources; row builders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pytest

from consortium_lab import runs
from consortium_lab.analysis import charts, theme
from consortium_lab.analysis import dashboard as usage
from consortium_lab.analysis import rows as chart_rows
from consortium_lab.engine.events import (
    Event,
    IterationFinished,
    IterationStarted,
    MemberDone,
    MemberFailed,
    RunFinished,
    RunStarted,
    Stage,
    SynthesisReady,
    Usage,
)
from consortium_lab.engine.result import RunResult
from consortium_lab.sinks.runlog import RunStore

RUN_ID = "run-charts-1"


def _done(
    model: str,
    instance: int,
    iteration: int,
    answer: str,
    confidence: float | None,
    *,
    stage: Stage = "answer",
    latency_ms: float = 1000.0,
    usage: tuple[int | None, int | None] = (10, 20),
) -> MemberDone:
    return MemberDone(
        run_id=RUN_ID,
        model=model,
        instance=instance,
        iteration=iteration,
        stage=stage,
        text=f"<answer>{answer}</answer>",
        answer=answer,
        confidence=confidence,
        latency_ms=latency_ms,
        served_by=model,
        usage=Usage(input_tokens=usage[0], output_tokens=usage[1]),
        at="2025-01-02T10:00:00+00:00",
    )


def run_events() -> list[Event]:
    """Two iterations of m-a (one instance) and m-b (two instances), with a failed member, a
    member of unknown confidence and a peer review."""
    config = {
        "models": {"m-a": 1, "m-b": 2},
        "arbiter": "arb",
        "mode": "consortium",
        "confidence_threshold": 0.8,
    }
    at = "2025-01-02T10:00:00+00:00"
    return [
        RunStarted(run_id=RUN_ID, prompt="Why is the sky blue?", config=config, at=at),
        IterationStarted(run_id=RUN_ID, iteration=1, at=at),
        _done("m-b", 1, 1, "Blue light scatters more.", None, latency_ms=3000.0),
        _done("m-a", 1, 1, "Rayleigh scattering.", 0.7, latency_ms=1000.0),
        MemberFailed(
            run_id=RUN_ID,
            model="m-b",
            instance=2,
            iteration=1,
            error="boom",
            error_type="error",
            latency_ms=500.0,
            at=at,
        ),
        SynthesisReady(
            run_id=RUN_ID,
            iteration=1,
            model="arb",
            synthesis="Scattering.",
            confidence=0.6,
            needs_iteration=True,
            at=at,
        ),
        IterationFinished(run_id=RUN_ID, iteration=1, confidence=0.6, will_continue=True, at=at),
        IterationStarted(run_id=RUN_ID, iteration=2, at=at),
        _done("m-a", 1, 2, "The sky is blue.", 0.9, latency_ms=2000.0),
        _done("m-b", 1, 2, "the sky is BLUE", 0.8, latency_ms=5000.0, usage=(None, None)),
        _done("m-b", 2, 2, "Grass is green.", 0.5, latency_ms=4000.0),
        _done("m-a", 1, 2, "I rank m-b first.", 0.4, stage="peer_review"),
        SynthesisReady(
            run_id=RUN_ID,
            iteration=2,
            model="arb",
            synthesis="The sky is blue because of Rayleigh scattering.",
            confidence=0.9,
            at=at,
        ),
        IterationFinished(run_id=RUN_ID, iteration=2, confidence=0.9, at=at),
        RunFinished(run_id=RUN_ID, iterations=2, confidence=0.9, at=at),
    ]


@pytest.fixture
def result() -> RunResult:
    return RunResult.from_events(run_events())


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    """A ``runs.to_pandas()`` frame of the run above, read back from a real run log."""
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        assert store.record_many(run_events(), strict=True) == len(run_events())
    return runs.to_pandas(path=db)


def live_charts() -> dict[str, alt.TopLevelMixin]:
    return {
        charts.CONFIDENCE: charts.confidence_chart(0.75),
        charts.MEMBER_CONFIDENCE: charts.member_confidence_chart(),
        charts.CONSENSUS: charts.consensus_meter(),
        charts.WORDS: charts.word_cloud("m-a#1"),
    }


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _named_data(spec: dict[str, Any]) -> set[str]:
    return {
        node["data"]["name"]
        for node in _walk(spec)
        if isinstance(node, dict) and isinstance(node.get("data"), dict) and "name" in node["data"]
    }


def _assert_self_contained(spec: dict[str, Any]) -> None:
    body = {key: value for key, value in spec.items() if key != "$schema"}
    text = json.dumps(body)
    assert "http" not in text.lower()
    assert "//" not in text
    assert not any(isinstance(node, dict) and "url" in node for node in _walk(body))
    assert "usermeta" not in spec and "embedOptions" not in text
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


# -- live charts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [charts.CONFIDENCE, charts.MEMBER_CONFIDENCE, charts.CONSENSUS])
def test_live_chart_validates_and_reads_its_named_dataset(name: str) -> None:
    spec = charts.spec(live_charts()[name])  # to_dict validates against the schema
    assert _named_data(spec) == {name}
    assert "datasets" not in spec  # no rows of its own: a front end streams them in
    _assert_self_contained(spec)
    assert name in chart_rows.DATASETS


def test_word_cloud_spec() -> None:
    spec = charts.spec(charts.word_cloud("m-a#1"))
    assert _named_data(spec) == {charts.WORDS}
    assert spec["transform"] == [{"filter": {"field": "member", "equal": "m-a#1"}}]
    enc = spec["encoding"]
    assert enc["x"]["scale"] is None and enc["y"]["scale"] is None  # Python's pixels as-is
    assert enc["size"] == {"field": "size", "type": "quantitative", "scale": None, "legend": None}
    assert spec["width"] == chart_rows.WORD_CLOUD_WIDTH
    assert spec["height"] == chart_rows.WORD_CLOUD_HEIGHT
    _assert_self_contained(spec)
    assert "transform" not in charts.spec(charts.word_cloud())


def test_confidence_chart_threshold_rule() -> None:
    spec = charts.spec(charts.confidence_chart(0.75))
    rules = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rule"]
    assert len(rules) == 1
    assert rules[0]["data"] == {"values": [{"threshold": 0.75, "label": "threshold 75%"}]}
    assert rules[0]["encoding"]["y"]["field"] == "threshold"
    labels = [layer for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert labels[0]["encoding"]["text"]["field"] == "label"
    line = spec["layer"][0]
    assert line["data"] == {"name": "confidence"}
    assert line["encoding"]["x"]["type"] == "ordinal"
    assert line["encoding"]["y"]["scale"]["domain"] == [0, 1]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            charts.confidence_chart(bad)


def test_member_confidence_chart_shows_unknown_distinctly() -> None:
    spec = charts.spec(charts.member_confidence_chart())
    bars = spec["layer"][0]
    assert bars["encoding"]["color"]["value"] == theme.UNKNOWN_FILL
    assert bars["encoding"]["color"]["condition"]["test"] == "isValid(datum.confidence)"
    assert bars["encoding"]["strokeDash"]["value"] == [4, 3]
    assert spec["layer"][1]["encoding"]["text"] == {"value": "?"}


def test_charts_import_leaves_data_transformers_alone() -> None:
    assert alt.data_transformers.active == "default"
    assert "max_rows" not in alt.data_transformers.options


# -- row builders --------------------------------------------------------------------------------


def test_confidence_rows(result: RunResult) -> None:
    assert chart_rows.confidence_rows(result) == [
        {"iteration": 1, "confidence": 0.6},
        {"iteration": 2, "confidence": 0.9},
    ]


def test_member_confidence_rows(result: RunResult) -> None:
    # Config order, failed members and peer reviews left out, unknown confidence kept as None.
    assert chart_rows.member_confidence_rows(result) == [
        {"member": "m-a#1", "iteration": 1, "confidence": 0.7},
        {"member": "m-b#1", "iteration": 1, "confidence": None},
        {"member": "m-a#1", "iteration": 2, "confidence": 0.9},
        {"member": "m-b#1", "iteration": 2, "confidence": 0.8},
        {"member": "m-b#2", "iteration": 2, "confidence": 0.5},
    ]


def test_consensus_rows(result: RunResult) -> None:
    # Last iteration: two identical answers and one disjoint: (1 + 0 + 0) / 3.
    assert chart_rows.consensus_rows(result) == [{"consensus": pytest.approx(1 / 3, abs=1e-15)}]
    one = RunResult.from_events(run_events()[:3])  # one answer so far: undefined
    assert chart_rows.consensus_rows(one) == []
    two = RunResult.from_events(run_events()[:5])  # two disjoint answers and a failure
    assert chart_rows.consensus_rows(two) == [{"consensus": 0.0}]


def test_row_builders_on_a_partial_run() -> None:
    partial = RunResult.from_events(run_events()[:2])
    assert chart_rows.result_rows(partial) == {
        charts.CONFIDENCE: [],
        charts.MEMBER_CONFIDENCE: [],
        charts.CONSENSUS: [],
        charts.WORDS: [],
    }


def test_word_rows_layout_is_deterministic_and_fits() -> None:
    texts = {
        "m-a#1": "Blue blue blue sky sky scattering of light, Rayleigh Rayleigh.",
        "m-b#1": "Green grass. " * 3 + " ".join(f"word{i}" for i in range(60)),
    }
    rows = chart_rows.word_rows(texts, top=40)
    assert rows == chart_rows.word_rows(texts, top=40)
    first = [row for row in rows if row["member"] == "m-a#1"]
    assert [(r["word"], r["count"]) for r in first] == [
        ("blue", 3),
        ("rayleigh", 2),
        ("sky", 2),
        ("light", 1),
        ("scattering", 1),
    ]
    top = first[0]
    width, height = chart_rows.WORD_CLOUD_WIDTH, chart_rows.WORD_CLOUD_HEIGHT
    assert (top["x"], top["y"]) == (width / 2, height / 2)
    assert top["size"] == chart_rows.WORD_CLOUD_MAX_FONT
    assert first[-1]["size"] == chart_rows.WORD_CLOUD_MIN_FONT
    for row in rows:
        assert 0 < row["x"] < width and 0 < row["y"] < height
        assert set(row) == {"member", "word", "count", "x", "y", "size"}
    assert 0 < len([r for r in rows if r["member"] == "m-b#1"]) <= 40
    # No two words of one member overlap, even with the narrowest glyph-width estimate.
    for member in texts:
        boxes = []
        for r in rows:
            if r["member"] == member:
                half_w, half_h = 0.35 * r["size"] * len(r["word"]) / 2, r["size"] / 2
                boxes.append((r["x"] - half_w, r["y"] - half_h, r["x"] + half_w, r["y"] + half_h))
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    assert chart_rows.word_rows({"empty": " ... "}) == []


def test_result_rows_and_with_data(result: RunResult) -> None:
    data = chart_rows.result_rows(result)
    assert set(data) == set(chart_rows.DATASETS)
    members = {row["member"] for row in data[charts.WORDS]}
    assert members == {"m-a#1", "m-b#1", "m-b#2", chart_rows.SYNTHESIS_KEY}

    chart = charts.confidence_chart(0.8)
    inlined = charts.with_data(chart, {charts.CONFIDENCE: data[charts.CONFIDENCE]})
    spec = charts.spec(inlined)
    assert spec["datasets"] == {charts.CONFIDENCE: chart_rows.confidence_rows(result)}
    assert _named_data(spec) == {charts.CONFIDENCE}  # still named: changesets still work
    assert "datasets" not in charts.spec(chart)  # the original is untouched
    _assert_self_contained(spec)

    cloud = charts.spec(charts.with_data(charts.word_cloud("m-a#1"), data))
    assert cloud["datasets"][charts.WORDS] == data[charts.WORDS]
    # Replacing rows of a name already inlined.
    again = charts.with_data(inlined, {charts.CONFIDENCE: []})
    assert charts.spec(again)["datasets"] == {charts.CONFIDENCE: []}


# -- usage dashboard -----------------------------------------------------------------------------


def _values(spec: dict[str, Any]) -> list[dict[str, Any]]:
    found = [
        node["data"]["values"]
        for node in _walk(spec)
        if isinstance(node, dict)
        and isinstance(node.get("data"), dict)
        and "values" in node["data"]
    ]
    assert found
    return list(found[0])


def test_dashboard_charts_from_run_log_frame(frame: pd.DataFrame) -> None:
    runs_spec = charts.spec(usage.runs_over_time_chart(frame))
    assert _values(runs_spec) == [{"day": "2025-01-02", "status": "completed", "runs": 1}]

    models = charts.spec(usage.models_used_chart(frame))
    assert sorted(_values(models), key=lambda r: (r["model"], r["status"])) == [
        {"model": "m-a", "status": "done", "answers": 2},
        {"model": "m-b", "status": "done", "answers": 3},
        {"model": "m-b", "status": "failed", "answers": 1},
    ]

    confidence = charts.spec(usage.confidence_by_model_chart(frame))
    by_model = {row["model"]: row for row in _values(confidence)}
    assert by_model["m-a"]["mean_confidence"] == pytest.approx(0.8)
    assert by_model["m-a"]["answers"] == 2  # the peer review is not an answer
    assert by_model["m-b"]["mean_confidence"] == pytest.approx(0.65)  # unknown left out
    assert by_model["m-b"]["answers"] == 2

    latency = charts.spec(usage.latency_by_model_chart(frame))
    by_model = {row["model"]: row for row in _values(latency)}
    assert by_model["m-b"] == {
        "model": "m-b",
        "min": 0.5,
        "q1": 2.375,
        "median": 3.5,
        "q3": 4.25,
        "max": 5.0,
        "calls": 4,
    }
    assert by_model["m-a"]["calls"] == 3  # every stage counts for latency

    tokens = charts.spec(usage.tokens_by_model_chart(frame))
    assert sorted(_values(tokens), key=lambda r: (r["model"], r["direction"])) == [
        {"model": "m-a", "direction": "input", "tokens": 30},
        {"model": "m-a", "direction": "output", "tokens": 60},
        {"model": "m-b", "direction": "input", "tokens": 20},
        {"model": "m-b", "direction": "output", "tokens": 40},
    ]

    dashboard = charts.spec(usage.usage_dashboard(frame))
    assert len(dashboard["vconcat"]) == 3
    for spec in (runs_spec, models, confidence, latency, tokens, dashboard):
        _assert_self_contained(spec)
        assert _named_data(spec) == set()


def test_dashboard_charts_from_small_frame_and_empty_frame() -> None:
    small = pd.DataFrame(
        {
            "run_id": ["r1", "r1", "r2"],
            "run_started_at": [
                "2025-03-01T23:30:00+00:00",
                "2025-03-01T23:30:00+00:00",
                "2025-03-03T08:00:00+01:00",
            ],
            "run_status": ["completed", "completed", "failed"],
            "model": ["x", "y", "x"],
            "stage": ["answer", "answer", "answer"],
            "status": ["done", "done", "failed"],
            "confidence": [0.5, None, None],
            "latency_ms": [100.0, 200.0, None],
            "input_tokens": [1, 2, None],
            "output_tokens": [3, 4, None],
        }
    )
    assert _values(charts.spec(usage.runs_over_time_chart(small))) == [
        {"day": "2025-03-01", "status": "completed", "runs": 1},
        {"day": "2025-03-03", "status": "failed", "runs": 1},
    ]
    charts.spec(usage.usage_dashboard(small))

    empty = small.iloc[0:0]
    spec = charts.spec(usage.usage_dashboard(empty))
    _assert_self_contained(spec)
    with pytest.raises(ValueError, match="latency_ms"):
        usage.latency_by_model_chart(small.drop(columns=["latency_ms"]))
