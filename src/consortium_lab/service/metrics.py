"""The service's own Prometheus metrics (``/metrics`` serves them after the gateway's)."""

from __future__ import annotations

__all__ = ["ServiceMetrics"]


class ServiceMetrics:
    """The service's own Prometheus metrics (prefix ``consortium_service_``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.http_requests = Counter(
            "consortium_service_http_requests",
            "HTTP requests answered, by route, method and status.",
            ("route", "method", "status"),
            registry=reg,
        )
        self.http_duration = Histogram(
            "consortium_service_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of a stream).",
            ("route",),
            registry=reg,
        )
        self.chat_requests = Counter(
            "consortium_service_chat_requests",
            "Chat completions by requested model and outcome (ok or the failure kind).",
            ("model", "outcome", "stream"),
            registry=reg,
        )
        self.auth_failures = Counter(
            "consortium_service_auth_failures",
            "Requests refused for authentication, by reason.",
            ("reason",),
            registry=reg,
        )
        self.active_streams = Gauge(
            "consortium_service_active_streams", "Chat streams being sent now.", registry=reg
        )

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
