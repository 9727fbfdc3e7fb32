"""Which model actually answers a call: model groups, load balancing and cool-downs.

A *model group* is one logical model served by several ``llm`` models (deployments: other keys,
endpoints or regions). The router orders a group's deployments by ``least-busy`` (fewest calls
in flight, then lowest latency) or ``lowest-latency`` (an exponentially weighted moving average
of call latency). Every model, grouped or not, has a health record: after ``cooldown_after``
consecutive failed calls it rests for ``cooldown`` seconds, so a failing provider is not
hammered and a group's failed deployment leaves the rotation until it has rested.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["least-busy", "lowest-latency"]
_EWMA_WEIGHT = 0.3


@dataclass
class Health:
    """What the gateway knows about one model's recent behaviour."""

    in_flight: int = 0
    latency_ms: float | None = None
    consecutive_failures: int = 0
    resting_until: float = 0.0

    def resting(self, now: float) -> bool:
        return now < self.resting_until


class Router:
    """Deployment choice and model health (thread-safe)."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[str]] | None = None,
        *,
        strategy: Strategy = "least-busy",
        cooldown: float = 30.0,
        cooldown_after: int = 3,
    ) -> None:
        if strategy not in ("least-busy", "lowest-latency"):
            raise ValueError(f"routing: unknown strategy {strategy!r}")
        for name, members in (groups or {}).items():
            if not members:
                raise ValueError(f"groups: group {name!r} has no deployments")
        self.groups = {name: list(members) for name, members in (groups or {}).items()}
        self.strategy = strategy
        self.cooldown = cooldown
        self.cooldown_after = cooldown_after
        self._health: dict[str, Health] = {}
        self._lock = threading.Lock()

    def health(self, model: str) -> Health:
        with self._lock:
            return self._health.setdefault(model, Health())

    def deployments(self, model: str) -> list[str]:
        """The models to try for ``model``, best first, resting ones last (the gateway skips
        those and fails fast with a ``cooldown`` error when nothing else is left)."""
        members = self.groups.get(model, [model])
        now = time.monotonic()
        with self._lock:
            states = [(m, self._health.setdefault(m, Health())) for m in members]

        def order(item: tuple[str, Health]) -> tuple[bool, float, float]:
            _, h = item
            latency = h.latency_ms if h.latency_ms is not None else 0.0
            if self.strategy == "least-busy":
                return (h.resting(now), h.in_flight, latency)
            return (h.resting(now), latency, h.in_flight)

        return [m for m, _ in sorted(states, key=order)]

    def resting_for(self, model: str) -> float:
        """Seconds until ``model`` may be called again (0 when it may be called now)."""
        return max(0.0, self.health(model).resting_until - time.monotonic())

    def started(self, model: str) -> None:
        with self._lock:
            self._health.setdefault(model, Health()).in_flight += 1

    def finished(self, model: str, *, ok: bool, latency_ms: float | None = None) -> None:
        """Record the end of a call to ``model`` (after its retries)."""
        with self._lock:
            h = self._health.setdefault(model, Health())
            h.in_flight = max(0, h.in_flight - 1)
            if ok:
                h.consecutive_failures = 0
                if latency_ms is not None:
                    h.latency_ms = (
                        latency_ms
                        if h.latency_ms is None
                        else (1 - _EWMA_WEIGHT) * h.latency_ms + _EWMA_WEIGHT * latency_ms
                    )
            else:
                h.consecutive_failures += 1
                if h.consecutive_failures >= self.cooldown_after:
                    h.resting_until = time.monotonic() + self.cooldown
