"""Prometheus metrics: names, labels, values, and one registry per instance."""

from __future__ import annotations

import pytest

from consortium_lab.gateway.metrics import CONTENT_TYPE, LATENCY_BUCKETS, Metrics

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, keyed by name and labels."""
    result = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            result[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_counters_appear_with_their_labels() -> None:
    m = Metrics()
    m.request("gpt-4o", "ok", 1.5, 0.2)
    m.request("gpt-4o", "ok")
    m.request("gpt-4o", "error", 0.1)
    m.failure("gpt-4o", "timeout")
    m.retry("gpt-4o")
    m.retry("gpt-4o", 2)
    m.retry("gpt-4o", 0)
    m.fallback("gpt-4o", "gpt-4o-mini")
    m.cache_hit("demo-analyst")
    m.cache_miss("demo-analyst")
    m.cache_miss("demo-analyst")
    m.tokens("gpt-4o", 120, 30)
    m.tokens("gpt-4o", None, 5)
    m.cost("gpt-4o", 0.25, "USD")
    m.cost("gpt-4o", 0.5, "USD")
    m.cost("gpt-4o", None, "USD")  # unknown: skipped
    m.cost("gpt-4o", 1.0, "EUR")
    m.quota_rejection("tokens_per_day")

    p = "consortium_gateway_"
    assert value(m, f"{p}requests_total", model="gpt-4o", outcome="ok") == 2
    assert value(m, f"{p}requests_total", model="gpt-4o", outcome="error") == 1
    assert value(m, f"{p}failures_total", model="gpt-4o", kind="timeout") == 1
    assert value(m, f"{p}retries_total", model="gpt-4o") == 3
    assert value(m, f"{p}fallbacks_total", model="gpt-4o", fallback="gpt-4o-mini") == 1
    assert value(m, f"{p}cache_hits_total", model="demo-analyst") == 1
    assert value(m, f"{p}cache_misses_total", model="demo-analyst") == 2
    assert value(m, f"{p}tokens_total", model="gpt-4o", direction="input") == 120
    assert value(m, f"{p}tokens_total", model="gpt-4o", direction="output") == 35
    assert value(m, f"{p}cost_total", model="gpt-4o", currency="USD") == pytest.approx(0.75)
    assert value(m, f"{p}cost_total", model="gpt-4o", currency="EUR") == 1.0
    assert value(m, f"{p}quota_rejections_total", limit="tokens_per_day") == 1


def test_histograms_use_llm_buckets() -> None:
    m = Metrics()
    m.request("m", "ok", duration=1.5, ttft=0.2)
    m.request("m", "ok", duration=300.0, ttft=0.04)
    p = "consortium_gateway_"
    assert value(m, f"{p}request_duration_seconds_count", model="m") == 2
    assert value(m, f"{p}request_duration_seconds_sum", model="m") == pytest.approx(301.5)
    assert value(m, f"{p}request_duration_seconds_bucket", model="m", le="2.0") == 1
    assert value(m, f"{p}request_duration_seconds_bucket", model="m", le="120.0") == 1
    assert value(m, f"{p}request_duration_seconds_bucket", model="m", le="+Inf") == 2
    assert value(m, f"{p}time_to_first_token_seconds_bucket", model="m", le="0.05") == 1
    assert value(m, f"{p}time_to_first_token_seconds_bucket", model="m", le="0.25") == 2
    assert LATENCY_BUCKETS[0] == 0.05 and LATENCY_BUCKETS[-1] == 120.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_rendered_text_names_and_types() -> None:
    text = Metrics().render().decode()
    for name in (
        "requests_total",
        "failures_total",
        "retries_total",
        "fallbacks_total",
        "cache_hits_total",
        "cache_misses_total",
        "tokens_total",
        "cost_total",
        "quota_rejections_total",
    ):
        assert f"# TYPE consortium_gateway_{name} counter" in text
    assert "# TYPE consortium_gateway_request_duration_seconds histogram" in text
    assert "# TYPE consortium_gateway_time_to_first_token_seconds histogram" in text


def test_two_instances_do_not_share_counters() -> None:
    first, second = Metrics(), Metrics()
    first.request("m", "ok")
    first.request("m", "ok")
    second.request("m", "ok")
    name = "consortium_gateway_requests_total"
    assert value(first, name, model="m", outcome="ok") == 2
    assert value(second, name, model="m", outcome="ok") == 1
    assert first.registry is not second.registry
    assert value(Metrics(), name, model="m", outcome="ok") is None


def test_bad_values_are_rejected() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="outcome"):
        m.request("m", "fine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        m.cost("m", -0.1)


def test_content_type_matches_the_text_format() -> None:
    assert CONTENT_TYPE == prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4
    assert Metrics().content_type == CONTENT_TYPE
