"""The evaluation's parts that need no model: datasets, scorers, statistics, the Pareto front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from consortium_lab.eval import (
    ConditionResult,
    DatasetError,
    Item,
    bootstrap_interval,
    get_scorer,
    load_dataset,
    pareto_front,
)
from consortium_lab.eval.scorers import last_number

GOOD = [
    {"id": "a", "prompt": "1+1?", "answer": "2"},
    {"id": "b", "prompt": "2+2?", "answer": "4", "choices": ["3", "4"], "metadata": {"k": 1}},
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_csv_frame_and_list_read_the_same(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "d.jsonl", [json.dumps(r) for r in GOOD])
    csv = tmp_path / "d.csv"
    csv.write_text('id,prompt,answer,choices,metadata\na,1+1?,2,,\nb,2+2?,4,3|4,"{""k"": 1}"\n')
    for source in (jsonl, csv, pd.DataFrame(GOOD), GOOD):
        data = load_dataset(source)
        assert [i.id for i in data.items] == ["a", "b"]
        assert data.items[1].choices == ("3", "4")
        assert data.items[1].metadata == {"k": 1}
        assert data.items[0].answer == "2"


def test_each_kind_of_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            json.dumps(GOOD[0]),
            "{not json",
            json.dumps({"id": "c", "prompt": "x?"}),
            json.dumps({"id": "a", "prompt": "again?", "answer": "1"}),
            json.dumps({"id": "d", "prompt": "", "answer": "1"}),
            json.dumps({"id": "e", "prompt": ["list"], "answer": "1"}),
            json.dumps({"id": "f", "prompt": "p", "answer": "1", "metadata": [1]}),
            "[1, 2]",
            json.dumps(GOOD[1]),
        ],
    )
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert [(b.line, b.problem.split(":")[0]) for b in caught.value.bad] == [
        (2, "unreadable line"),
        (3, "missing field(s)"),
        (4, "duplicate id 'a' (first on line 1)"),
        (5, "missing field(s)"),
        (6, "prompt"),
        (7, "metadata"),
        (8, "expected an object with id, prompt, answer, got list"),
    ]
    assert "line 3: missing field(s): answer" in message
    assert "--skip-bad" in message
    skipped = load_dataset(path, skip_bad=True)
    assert [i.id for i in skipped.items] == ["a", "b"]
    assert len(skipped.skipped) == 7


def test_csv_bad_rows_and_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,prompt,answer\na,p,1\nb,p\nc,,2\n")
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    assert [b.line for b in caught.value.bad] == [3, 4]
    (tmp_path / "nohead.csv").write_text("id,question\n1,x\n")
    with pytest.raises(DatasetError, match="lacks column"):
        load_dataset(tmp_path / "nohead.csv")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetError, match="no usable items"):
        load_dataset([{"id": "x"}], skip_bad=True)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("The sum is 1,234.", 1234.0),
        ("from -3 to −7", -7.0),
        ("+12.5 then 3", 3.0),
        ("x = 0.25", 0.25),
        ("no number", None),
    ],
)
def test_last_number(text: str, number: float | None) -> None:
    assert last_number(text) == number


async def test_scorers_verdicts() -> None:
    item = Item("i", "Which?", "B", choices=("red", "blue", "green"))
    numeric = Item("n", "sum?", "1,234")
    cases = [
        ("exact", Item("e", "p", "Paris"), "  paris ", True),
        ("exact", Item("e", "p", "Paris"), "Paris, France", False),
        ("contains", Item("e", "p", "Paris"), "It is PARIS.", True),
        ("numeric", numeric, "So 1234", True),
        ("numeric", numeric, "1,235", False),
        ("numeric", numeric, "none", False),
        ("choice", item, "(B)", True),
        ("choice", item, "Answer: B", True),
        ("choice", item, "b", True),
        ("choice", item, "B) because blue", True),
        ("choice", item, "The answer is a bit unclear", False),
        ("choice", item, "blue", True),
        ("choice", item, "A", False),
        ("choice", Item("t", "p", "blue", choices=("red", "blue")), "B", True),
    ]
    for name, it, answer, expected in cases:
        score = await get_scorer(name).score(answer, it)
        assert score.correct is expected, (name, answer)
    assert (await get_scorer("numeric", tolerance=1).score("1235", numeric)).correct
    regex = get_scorer("regex", pattern=r"final: (\w+)")
    assert (await regex.score("so final: Paris", Item("r", "p", "paris"))).correct
    assert not (await regex.score("Paris", Item("r", "p", "paris"))).correct
    custom = get_scorer(lambda answer, item: answer.endswith("!"))
    assert (await custom.score("yes!", item)).correct
    with pytest.raises(ValueError, match="unknown scorer"):
        get_scorer("fuzzy")
    with pytest.raises(ValueError, match="needs a pattern"):
        get_scorer("regex")
    with pytest.raises(ValueError, match="needs a model"):
        get_scorer("judge")


def test_bootstrap_is_fixed_by_its_seed_and_matches_the_percentile_method() -> None:
    values = [1.0] * 5 + [0.0] * 5
    low, high = bootstrap_interval(values, seed=7, resamples=500)
    assert (low, high) == bootstrap_interval(values, seed=7, resamples=500)
    rng = np.random.default_rng(7)
    means = np.asarray(values)[rng.integers(0, 10, size=(500, 10))].mean(axis=1)
    assert (low, high) == tuple(np.percentile(means, [2.5, 97.5]))
    assert low < 0.5 < high
    assert bootstrap_interval([1.0] * 4) == (1.0, 1.0)
    assert bootstrap_interval([]) == (0.0, 0.0)


def _condition(name: str, accuracy: float, cost: float | None, latency: float) -> ConditionResult:
    return ConditionResult(
        name=name,
        correct=int(accuracy * 10),
        n=10,
        accuracy=accuracy,
        ci_low=0,
        ci_high=1,
        cost=cost,
        latency_mean=latency,
    )


def test_pareto_front() -> None:
    conditions = [
        _condition("cheap", 0.5, 0.01, 1.0),
        _condition("dominated", 0.4, 0.02, 2.0),
        _condition("best", 0.9, 0.10, 0.5),
        _condition("unpriced", 0.95, None, 3.0),
    ]
    assert [c.name for c in pareto_front(conditions, "cost")] == ["cheap", "best"]
    assert [c.name for c in pareto_front(conditions, "latency")] == ["best", "unpriced"]
    with pytest.raises(ValueError, match="'cost' or 'latency'"):
        pareto_front(conditions, "tokens")


def test_a_sample_name_changes_the_cache_key_and_no_name_keeps_the_old_key() -> None:
    from consortium_lab.gateway.cache import cache_key

    base: dict[str, Any] = dict(
        model="m",
        instance=1,
        stage="answer",
        prompt="p",
        system=None,
        history=(),
        options={},
        user=None,
    )
    old = cache_key(**base)
    assert cache_key(**base, sample=None) == old  # unsampled entries stay reachable
    keys = {cache_key(**base, sample=s) for s in ("vote#0", "vote#1", "consortium#0")}
    assert len(keys) == 3 and old not in keys
