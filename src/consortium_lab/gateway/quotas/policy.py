"""What one user may do, the clock-aligned windows it is counted in, and the refusal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class QuotaPolicy(BaseModel):
    """How much one user may do. Every field is optional; ``None`` means no limit.

    Values must be positive integers; a bad value raises pydantic's ``ValidationError`` whose
    message names the field. Policies are immutable: change one with
    ``policy.model_copy(update={...})`` and :meth:`QuotaManager.set_policy`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(None, description="Calls per clock minute.")
    requests_per_day: int | None = Field(None, description="Calls per UTC day.")
    tokens_per_minute: int | None = Field(
        None, description="Input + output tokens per clock minute."
    )
    tokens_per_day: int | None = Field(None, description="Input + output tokens per UTC day.")
    max_output_tokens_per_call: int | None = Field(
        None, description="Output cap of any single call (lowers a larger cap the call asks for)."
    )

    @field_validator(
        "requests_per_minute",
        "requests_per_day",
        "tokens_per_minute",
        "tokens_per_day",
        "max_output_tokens_per_call",
        mode="before",
    )
    @classmethod
    def _positive(cls, value: Any, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        number: Any = value
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(
                f"{info.field_name} must be a positive integer or None (got {value!r})"
            )
        return number

    @property
    def unlimited(self) -> bool:
        """True when no field sets a limit."""
        return all(getattr(self, name) is None for name in type(self).model_fields)


class WindowUsage(TypedDict):
    """One window of :meth:`QuotaManager.usage`."""

    used: int
    limit: int | None
    remaining: int | None
    resets_at: datetime


WindowName = Literal[
    "requests_per_minute", "requests_per_day", "tokens_per_minute", "tokens_per_day"
]


@dataclass(frozen=True)
class Window:
    field: WindowName
    kind: Literal["requests", "tokens"]
    seconds: int
    label: str

    def bounds(self, now: float) -> tuple[int, float]:
        """``(index, end)`` of the window that contains ``now``."""
        index = math.floor(now / self.seconds)
        return index, float((index + 1) * self.seconds)

    def key(self, user: str, index: int) -> str:
        return f"consortium_lab/quota/{self.field}/{index}/{user}"


WINDOWS = (
    Window("requests_per_minute", "requests", 60, "requests per minute"),
    Window("requests_per_day", "requests", 86_400, "requests per day"),
    Window("tokens_per_minute", "tokens", 60, "tokens per minute"),
    Window("tokens_per_day", "tokens", 86_400, "tokens per day"),
)
REQUEST_WINDOWS = tuple(w for w in WINDOWS if w.kind == "requests")
TOKEN_WINDOWS = tuple(w for w in WINDOWS if w.kind == "tokens")


def _in(seconds: float) -> str:
    """A short duration: ``3h 12m``, ``4m 5s``, ``12s``, ``2d 1h``."""
    total = max(0, math.ceil(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


class QuotaExceeded(Exception):
    """A call was refused because it would pass one of the user's limits.

    Attributes:
        user: the user.
        limit: the limit's human name, e.g. ``"tokens per day"``.
        window: the :class:`QuotaPolicy` field of that limit, e.g. ``"tokens_per_day"`` (a
            stable label for metrics).
        allowed: the limit's number.
        resets_at: when the window starts again (aware, UTC).
        retry_after: seconds until then (for an HTTP ``Retry-After``).
        used: how much of the window was used when the call was refused.
        requested: the output cap that did not fit in what was left, if that was the reason.
    """

    def __init__(
        self,
        user: str,
        limit: str,
        allowed: int,
        resets_at: datetime,
        retry_after: float,
        *,
        window: str = "",
        used: int | None = None,
        requested: int | None = None,
    ) -> None:
        self.user = user
        self.limit = limit
        self.allowed = allowed
        self.resets_at = resets_at
        self.retry_after = retry_after
        self.window = window or limit.replace(" ", "_")
        self.used = used
        self.requested = requested
        message = (
            f"quota exceeded for user {user!r}: {allowed} {limit}; "
            f"resets at {resets_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (in {_in(retry_after)})"
        )
        if requested is not None and used is not None:
            left = max(0, allowed - used)
            message += (
                f"; {left} left, fewer than this call's output cap of {requested}"
                f" (lower the cap to at most {left} or wait)"
                if left
                else f"; none left for this call's output cap of {requested}"
            )
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_exceeded,
            (
                self.user,
                self.limit,
                self.allowed,
                self.resets_at,
                self.retry_after,
                self.window,
                self.used,
                self.requested,
            ),
        )


def _rebuild_exceeded(
    user: str,
    limit: str,
    allowed: int,
    resets_at: datetime,
    retry_after: float,
    window: str,
    used: int | None,
    requested: int | None,
) -> QuotaExceeded:
    return QuotaExceeded(
        user, limit, allowed, resets_at, retry_after, window=window, used=used, requested=requested
    )
