"""Prometheus metrics of the gateway.

Every :class:`Metrics` has its own ``CollectorRegistry``, so several gateways (and tests) in one
process never share or collide on a counter. Names follow Prometheus conventions, all with the
prefix ``consortium_gateway_``:

==========================================  ================================================
metric                                      labels
==========================================  ================================================
``requests_total``                          ``model``, ``outcome`` (``ok`` | ``error``)
``failures_total``                          ``model``, ``kind`` (``CallFailed.kind``)
``retries_total``                           ``model``
``fallbacks_total``                         ``model`` (asked), ``fallback`` (served instead)
``cache_hits_total``, ``cache_misses_total``  ``model``
``tokens_total``                            ``model``, ``direction`` (``input`` | ``output``)
``cost_total``                              ``model``, ``currency``
``quota_rejections_total``                  ``limit`` (``QuotaExceeded.window``)
``request_duration_seconds`` (histogram)    ``model``
``time_to_first_token_seconds`` (histogram)  ``model``
==========================================  ================================================

``cost_total`` is in the price table's currency, which is a label rather than part of the name
(Prometheus puts base units in names, and money has none): sum it only within one currency,
``sum by (currency) (consortium_gateway_cost_total)``. Costs that are unknown (a model without
a price) are not added; count them from ``tokens_total``.

Serve :meth:`Metrics.render` with the header ``Content-Type:`` :data:`CONTENT_TYPE`.
``prometheus_client`` is imported only when a :class:`Metrics` is made, which keeps
``import consortium_lab`` light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "PREFIX", "Metrics"]

PREFIX = "consortium_gateway_"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of :meth:`Metrics.render`: Prometheus text format 0.0.4 (the same as
``prometheus_client.CONTENT_TYPE_PLAIN_0_0_4``)."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
"""Histogram buckets in seconds: a cached answer (tens of ms) up to a long generation (2 min);
slower calls fall in ``+Inf``."""

Outcome = Literal["ok", "error"]


class Metrics:
    """The gateway's counters and histograms, in a registry of their own.

    Args:
        namespace_prefix: the start of every metric name.

    Raises:
        ImportError: ``prometheus_client`` is not installed.
    """

    def __init__(self, *, namespace_prefix: str = PREFIX) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError as exc:
            raise ImportError(
                "metrics need the 'prometheus-client' package, a dependency of consortium-lab: "
                "reinstall it with `pip install consortium-lab`"
            ) from exc
        p = namespace_prefix
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        reg = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            # prometheus_client appends "_total" to a counter's samples itself.
            return Counter(f"{p}{name}", doc, labels, registry=reg)

        self.requests_total = counter(
            "requests", "Model calls finished, by outcome (ok or error).", ("model", "outcome")
        )
        self.failures_total = counter(
            "failures", "Failed model calls, by failure kind.", ("model", "kind")
        )
        self.retries_total = counter("retries", "Model calls retried after a failure.", ("model",))
        self.fallbacks_total = counter(
            "fallbacks", "Calls served by a fallback model instead.", ("model", "fallback")
        )
        self.cache_hits_total = counter("cache_hits", "Calls answered from the cache.", ("model",))
        self.cache_misses_total = counter(
            "cache_misses", "Cacheable calls not found in the cache.", ("model",)
        )
        self.tokens_total = counter(
            "tokens", "Tokens reported by providers, by direction.", ("model", "direction")
        )
        self.cost_total = counter(
            "cost",
            "Cost of calls from the price table, in the currency label.",
            ("model", "currency"),
        )
        self.quota_rejections_total = counter(
            "quota_rejections", "Calls refused by a user quota, by limit.", ("limit",)
        )
        self.request_duration_seconds = Histogram(
            f"{p}request_duration_seconds",
            "Time a model call took, start to end.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.time_to_first_token_seconds = Histogram(
            f"{p}time_to_first_token_seconds",
            "Time from the start of a call to its first streamed token.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

    # -- recording --------------------------------------------------------------------------
    def request(
        self,
        model: str,
        outcome: Outcome,
        duration: float | None = None,
        ttft: float | None = None,
    ) -> None:
        """A finished call: its outcome, and its duration and time to first token in seconds
        (each observed when given)."""
        if outcome not in ("ok", "error"):
            raise ValueError(f"outcome must be 'ok' or 'error' (got {outcome!r})")
        self.requests_total.labels(model=model, outcome=outcome).inc()
        if duration is not None:
            self.request_duration_seconds.labels(model=model).observe(duration)
        if ttft is not None:
            self.time_to_first_token_seconds.labels(model=model).observe(ttft)

    def failure(self, model: str, kind: str) -> None:
        """A failed call of ``model`` (``kind`` as in ``CallFailed.kind``)."""
        self.failures_total.labels(model=model, kind=kind).inc()

    def retry(self, model: str, count: int = 1) -> None:
        """``count`` retries of a call of ``model``."""
        if count:
            self.retries_total.labels(model=model).inc(count)

    def fallback(self, model: str, fallback: str) -> None:
        """A call of ``model`` that ``fallback`` served instead."""
        self.fallbacks_total.labels(model=model, fallback=fallback).inc()

    def cache_hit(self, model: str) -> None:
        """A call of ``model`` answered from the cache."""
        self.cache_hits_total.labels(model=model).inc()

    def cache_miss(self, model: str) -> None:
        """A cacheable call of ``model`` that was not in the cache."""
        self.cache_misses_total.labels(model=model).inc()

    def tokens(self, model: str, input_tokens: int | None, output_tokens: int | None) -> None:
        """Tokens of a call as the provider reported them (``None``: not reported, skipped)."""
        if input_tokens:
            self.tokens_total.labels(model=model, direction="input").inc(input_tokens)
        if output_tokens:
            self.tokens_total.labels(model=model, direction="output").inc(output_tokens)

    def cost(self, model: str, amount: float | None, currency: str = "USD") -> None:
        """The cost of a call (``None``: unknown, skipped; never counted as 0)."""
        if amount is None:
            return
        if amount < 0:
            raise ValueError(f"cost must not be negative (got {amount})")
        self.cost_total.labels(model=model, currency=currency).inc(amount)

    def quota_rejection(self, limit: str) -> None:
        """A call refused by a quota (``limit``: ``QuotaExceeded.window``, e.g.
        ``tokens_per_day``)."""
        self.quota_rejections_total.labels(limit=limit).inc()

    # -- exposition -------------------------------------------------------------------------
    def render(self) -> bytes:
        """The registry in Prometheus text format (serve with :data:`CONTENT_TYPE`)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    @property
    def content_type(self) -> str:
        """:data:`CONTENT_TYPE`, for convenience."""
        return CONTENT_TYPE
