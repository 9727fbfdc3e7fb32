"""Price tables and the pre-run estimate."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from consortium_lab.config.consortium import ConsortiumConfig, Limits
from consortium_lab.gateway.pricing import (
    PRICES_ENV,
    Price,
    PriceTable,
    estimate,
    estimate_tokens,
    format_money,
)
from consortium_lab.prompts import templates as prompts


def table(**models: tuple[float, float]) -> PriceTable:
    return PriceTable.model_validate(
        {
            "models": {
                name: {"input_per_million": i, "output_per_million": o}
                for name, (i, o) in models.items()
            }
        }
    )


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- the packaged table ---------------------------------------------------------------------------
def test_packaged_table_loads_and_is_marked_as_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV, raising=False)
    prices = PriceTable.load()
    assert prices.currency == "USD"
    assert prices.updated is not None
    assert "SAMPLE" in (prices.note or "")
    assert "packaged" in prices.source
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o3-mini",
        "claude-3.5-haiku",
        "claude-3.5-sonnet",
        "gemini-1.5-flash",
    ):
        price = prices.price(model)
        assert price is not None, model
        assert price.input_per_million > 0
        assert price.output_per_million > price.input_per_million
    for demo in ("demo-analyst", "demo-optimist", "demo-skeptic", "demo-arbiter"):
        assert prices.cost(demo, 10_000, 10_000) == 0.0
    assert prices.resolve("4o-mini") == "gpt-4o-mini"  # llm's alias
    assert prices.resolve("anthropic/claude-3-5-sonnet-latest") == "claude-3.5-sonnet"


def test_packaged_table_is_in_the_package_data() -> None:
    # Hatch packages every file under src/consortium_lab; make sure ours sits there and parses.
    path = Path(__file__).parents[1] / "src" / "consortium_lab" / "gateway" / "prices.json"
    assert json.loads(path.read_text(encoding="utf-8"))["models"]


def test_wheel_contains_the_price_table(tmp_path: Path) -> None:
    hatchling = pytest.importorskip("hatchling.builders.wheel")
    root = Path(__file__).parents[1]
    builder = hatchling.WheelBuilder(str(root))
    wheel = next(iter(builder.build(directory=str(tmp_path), versions=["standard"])))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "consortium_lab/gateway/prices.json" in names
    assert "consortium_lab/static/widget.js" in names  # the widget bundle ships in the wheel


# -- costs ----------------------------------------------------------------------------------------
def test_cost_arithmetic() -> None:
    prices = table(m=(2.5, 10.0))
    assert prices.cost("m", 1_000_000, 0) == pytest.approx(2.5)
    assert prices.cost("m", 0, 1_000_000) == pytest.approx(10.0)
    assert prices.cost("m", 1200, 800) == pytest.approx((1200 * 2.5 + 800 * 10.0) / 1e6)
    assert prices.cost("m", 0, 0) == 0.0
    assert Price(input_per_million=1, output_per_million=2).cost(500_000, 250_000) == 1.0
    with pytest.raises(ValueError, match="negative"):
        prices.cost("m", -1, 0)


def test_unknown_model_or_tokens_cost_none_never_zero() -> None:
    prices = table(m=(1.0, 1.0))
    assert prices.cost("other", 10, 10) is None
    assert prices.price("other") is None
    assert prices.cost("m", None, 10) is None
    assert prices.cost("m", 10, None) is None
    assert table().cost("m", 0, 0) is None


def test_aliases_and_patterns() -> None:
    prices = PriceTable.model_validate(
        {
            "models": {
                "big": {"input_per_million": 5, "output_per_million": 5},
                "local-*": {"input_per_million": 0, "output_per_million": 0},
                "local-gpu-*": {"input_per_million": 1, "output_per_million": 1},
            },
            "aliases": {"b": "big"},
        }
    )
    assert prices.resolve("big") == "big"
    assert prices.resolve("b") == "big"
    assert prices.resolve("local-cpu-1") == "local-*"
    assert prices.resolve("local-gpu-1") == "local-gpu-*"  # the longest pattern wins
    assert prices.resolve("Big") is None  # ids are case-sensitive


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": {"m": {"input_per_million": -1, "output_per_million": 1}}}, "input_per"),
        ({"models": {"m": {"input_per_million": 1}}}, "output_per_million"),
        ({"models": {"m": {"input": 1, "output_per_million": 1}}}, "input"),
        ({"currency": "dollars"}, "currency"),
        ({"aliases": {"a": "missing"}}, "'a' points to 'missing'"),
        ({"updated": "last week"}, "updated"),
        ({"modles": {}}, "modles"),
    ],
)
def test_invalid_tables_name_the_file_and_field(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "bad.json", data)
    with pytest.raises(ValueError, match=message) as info:
        PriceTable.load(path)
    assert str(path) in str(info.value)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="price table not found"):
        PriceTable.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        PriceTable.load(broken)


def test_custom_table_by_path_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {
        "updated": "2026-01-02",
        "currency": "eur",
        "models": {"house": {"input_per_million": 1, "output_per_million": 3}},
    }
    path = write(tmp_path / "prices.json", data)
    by_path = PriceTable.load(str(path))
    assert by_path.currency == "EUR"
    assert by_path.source == str(path)
    assert by_path.cost("house", 1_000_000, 1_000_000) == pytest.approx(4.0)
    assert by_path.cost("gpt-4o", 1, 1) is None  # only this table's models

    monkeypatch.setenv(PRICES_ENV, str(path))
    by_env = PriceTable.load()
    assert by_env.price("house") == by_path.price("house")
    assert by_env.updated is not None and by_env.updated.isoformat() == "2026-01-02"
    other = write(tmp_path / "other.json", {"models": {}})
    assert PriceTable.load(other).models == {}  # an explicit path wins over the env
    monkeypatch.setenv(PRICES_ENV, "")
    assert "packaged" in PriceTable.load().source


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (0.04, "USD", "$0.04"),
        (1234.5, "USD", "$1,234.50"),
        (0.0042, "USD", "$0.0042"),
        (0.000012345, "USD", "$0.000012"),
        (0.0, "USD", "$0.00"),
        (1.2, "EUR", "€1.20"),
        (3.0, "CHF", "3.00 CHF"),
    ],
)
def test_format_money(amount: float, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text


# -- estimates ------------------------------------------------------------------------------------
def config(**kwargs: Any) -> ConsortiumConfig:
    kwargs.setdefault("models", {"a": 2, "b": 1})
    kwargs.setdefault("arbiter", "j")
    return ConsortiumConfig(**kwargs)


PRICES = table(a=(1.0, 2.0), b=(3.0, 4.0), j=(5.0, 6.0))


@pytest.mark.parametrize(
    ("mode", "max_iterations", "minimum_iterations", "calls", "min_calls"),
    [
        ("consortium", 1, 1, 4, 4),  # 3 members + arbiter
        ("consortium", 3, 1, 12, 4),
        ("consortium", 3, 2, 12, 8),
        ("council", 1, 1, 7, 7),  # 3 answers + 3 peer reviews + chair
        ("council", 2, 1, 14, 7),
        ("compare", 1, 1, 3, 3),  # members only, one iteration
        ("compare", 5, 2, 3, 3),
    ],
)
def test_estimate_call_counts(
    mode: str, max_iterations: int, minimum_iterations: int, calls: int, min_calls: int
) -> None:
    cfg = config(mode=mode, max_iterations=max_iterations, minimum_iterations=minimum_iterations)
    result = estimate(cfg, "Why?", PRICES)
    assert (result.calls, result.min_calls) == (calls, min_calls)
    assert result.max_output_tokens == calls * 8192  # the config's default cap
    assert result.summary.startswith(f"about {calls} calls, ~$")
    assert result.summary.endswith(" at most")


def test_estimate_tokens_and_cost_of_one_iteration() -> None:
    prompt = "x" * 400  # 100 tokens
    cap = 1000
    cfg = config(models={"a": 2}, arbiter="j", max_iterations=1)
    result = estimate(cfg, prompt, PRICES, max_output_tokens=cap)
    assert result.calls == 3
    member_in = estimate_tokens(prompts.member_system_prompt(None, None)) + estimate_tokens(
        prompts.wrap_user_prompt(prompt)
    )
    assert member_in > 100 + len(prompts.template("system_prompt.xml")) // 4
    empty = [prompts.Candidate(id=i, model="a", answer="", confidence=1.0) for i in (1, 2)]
    judge_in = estimate_tokens(prompts.arbiter_prompt(prompt, empty, [], None)) + 2 * cap
    assert judge_in > 100 + len(prompts.template("arbiter_prompt.xml")) // 4 + 2 * cap
    assert result.max_input_tokens == 2 * member_in + judge_in
    assert result.max_output_tokens == 3 * cap
    expected = (2 * member_in * 1.0 + 2 * cap * 2.0 + judge_in * 5.0 + cap * 6.0) / 1e6
    assert result.max_cost == pytest.approx(expected)
    assert result.currency == "USD"
    assert result.unpriced_models == []


def test_estimate_grows_with_iterations_and_uses_the_config_cap() -> None:
    one = estimate(config(max_iterations=1, limits=Limits(max_output_tokens=500)), "q", PRICES)
    three = estimate(config(max_iterations=3, limits=Limits(max_output_tokens=500)), "q", PRICES)
    assert one.max_output_tokens == 4 * 500
    assert three.max_output_tokens == 12 * 500
    # Later iterations quote earlier answers and syntheses: more than 3x the input.
    assert one.max_input_tokens is not None and three.max_input_tokens is not None
    assert three.max_input_tokens > 3 * one.max_input_tokens
    assert one.max_cost is not None and three.max_cost is not None
    assert three.max_cost > 3 * one.max_cost


def test_estimate_rank_judging_and_council_use_their_templates() -> None:
    synth = estimate(config(max_iterations=1), "q", PRICES, max_output_tokens=10)
    rank = estimate(
        config(max_iterations=1, judging_method="rank"), "q", PRICES, max_output_tokens=10
    )
    assert synth.max_input_tokens is not None and rank.max_input_tokens is not None
    arbiter_len = len(prompts.template("arbiter_prompt.xml"))
    rank_len = len(prompts.template("rank_prompt.xml"))
    assert synth.max_input_tokens - rank.max_input_tokens == pytest.approx(
        (arbiter_len - rank_len) / 4, abs=30
    )


def test_estimate_unknown_prices() -> None:
    cfg = config(models={"a": 1, "m2": 1, "m1": 2}, arbiter="j")
    result = estimate(cfg, "q", PRICES)
    assert result.max_cost is None
    assert result.unpriced_models == ["m1", "m2"]
    assert result.summary == "about 15 calls; cost unknown for: m1, m2"
    compare = estimate(config(mode="compare", arbiter="nobody"), "q", PRICES)
    assert compare.unpriced_models == []  # no arbiter runs in compare mode
    assert compare.max_cost is not None


def test_estimate_summary_strings() -> None:
    cheap = table(a=(0.15, 0.6), b=(0.15, 0.6), j=(0.15, 0.6))
    result = estimate(
        config(max_iterations=1), "Why is the sky blue?", cheap, max_output_tokens=100
    )
    assert result.max_cost is not None
    assert result.summary == f"about 4 calls, ~{format_money(result.max_cost)} at most"
    free = estimate(
        config(models={"demo-analyst": 1}, arbiter="demo-arbiter", max_iterations=1),
        "q",
        PriceTable.load(),
    )
    assert free.summary == "about 2 calls, ~$0.00 at most"
    single = estimate(config(models={"a": 1}, mode="compare"), "q", PRICES)
    assert single.summary.startswith("about 1 call, ")
    unbounded = estimate(config(limits=Limits(max_output_tokens=None)), "q", PRICES)
    assert unbounded.max_cost is None and unbounded.max_output_tokens is None
    assert unbounded.summary == "about 12 calls; cost unbounded (no output-token limit)"
    eur = PriceTable.model_validate({**PRICES.model_dump(), "currency": "EUR"})
    assert "~€" in estimate(config(), "q", eur).summary
    with pytest.raises(ValueError, match="max_output_tokens"):
        estimate(config(), "q", PRICES, max_output_tokens=0)
