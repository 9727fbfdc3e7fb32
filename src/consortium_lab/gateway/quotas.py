"""Per-user rate limits and token quotas, kept in a ``limits`` storage.

A :class:`QuotaPolicy` says how much one user may do: requests per minute and per day, tokens
(input + output) per minute and per day, and the largest output a single call may ask for. A
:class:`QuotaManager` holds the policies and the counters, and the gateway asks it twice per
call::

    cap = quotas.check(user, requested_output_tokens)   # before: raises QuotaExceeded
    ...                                                  # the call, with output cap ``cap``
    quotas.charge(user, usage.input_tokens, usage.output_tokens)   # after: the real tokens

Windows
    Every window is a *fixed* window aligned to the clock (UTC): a minute window runs from
    ``hh:mm:00`` to the next minute, a day window from ``00:00:00 UTC`` to the next midnight. So
    a day quota resets at midnight UTC for everyone, and :class:`QuotaExceeded` can say exactly
    when. Requests and tokens are counted for every user, limited or not, so :meth:`usage`
    always reports, and raising or lowering a limit with :meth:`QuotaManager.set_policy` keeps
    what was already used.

What is checked when
    A request is counted by :meth:`QuotaManager.check` only when it is admitted (a refused
    request costs nothing). Tokens are known only after the call, so :meth:`check` refuses a
    call when a token window is already used up, or when the call's output cap is larger than
    what is left in it; :meth:`charge` then adds the tokens the provider reported. Calls that are
    in flight at the same time all see the same tokens left, so together they can pass a token
    limit by at most their output caps (a soft limit); the request limits are exact, also
    across processes.

Deferred counting (the gateway's fast path)
    :meth:`QuotaManager.try_check` admits a call of a user whose policy sets no request or token
    limit without waiting for the storage (nothing can refuse such a call), and
    :meth:`QuotaManager.charge_later` adds a finished call's tokens the same way: both counts are
    queued and written by a background thread a few milliseconds later, in one batch. Every
    :meth:`~QuotaManager.check`, :meth:`~QuotaManager.usage` and :meth:`~QuotaManager.reset`
    writes what is queued first (in the same storage transaction where the storage has them),
    so nothing in the process ever reads a stale count; :meth:`~QuotaManager.close` (or the
    interpreter's normal exit) writes the rest. Other processes sharing the storage see the
    counts a few milliseconds later.

Storage
    Counters live in a ``limits`` storage given as a URI: ``memory://`` (this process only),
    ``redis://host:port`` (``pip install redis``; passed to ``limits`` unchanged) or any other
    scheme ``limits`` knows, and ``sqlite:///path/to/file.db``, which ``limits`` does not have:
    :func:`sqlite_storage_class` adds it (see there), so a single gateway service keeps its
    quotas across restarts without running Redis.

    The counters use the storage's atomic ``incr``/``get`` directly, not one of the library's
    ``RateLimiter`` strategies: a strategy's key contains the limit's amount (so changing a
    user's limit would start their count again from zero), its fixed windows start at each
    key's first hit (so a day quota would not reset at a predictable time), and its
    ``hit`` counts refused hits too.

``limits`` is imported only when a :class:`QuotaManager` is made, which keeps
``import consortium_lab`` light.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from consortium_lab.gateway.flusher import start_flusher

if TYPE_CHECKING:
    from limits.storage import Storage

__all__ = [
    "QuotaExceeded",
    "QuotaManager",
    "QuotaPolicy",
    "WindowUsage",
    "sqlite_path",
    "sqlite_storage_class",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "quotas need the 'limits' package, a dependency of consortium-lab: "
    "reinstall it with `pip install consortium-lab`"
)


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
class _Window:
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


_WINDOWS = (
    _Window("requests_per_minute", "requests", 60, "requests per minute"),
    _Window("requests_per_day", "requests", 86_400, "requests per day"),
    _Window("tokens_per_minute", "tokens", 60, "tokens per minute"),
    _Window("tokens_per_day", "tokens", 86_400, "tokens per day"),
)
_REQUEST_WINDOWS = tuple(w for w in _WINDOWS if w.kind == "requests")
_TOKEN_WINDOWS = tuple(w for w in _WINDOWS if w.kind == "tokens")


class _Counters(Protocol):
    """What :class:`QuotaManager` needs of a storage: a ``limits`` storage, or one transaction
    of the SQLite storage (:meth:`_SQLiteCounters.transaction`)."""

    def get(self, key: str) -> int: ...

    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...


_Pending = dict[str, list[float]]
"""Queued increments: counter key -> ``[amount, end of its window]``."""


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


def _count(value: Any, name: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer (got {value!r})")
    return value


class QuotaManager:
    """Policies and counters for every user of one gateway. Thread-safe.

    Args:
        default: the policy of users without their own; ``None`` means unlimited.
        per_user: policies of particular users.
        storage: a ``limits`` storage URI (``memory://``, ``redis://host:port``…) or
            ``sqlite:///file.db`` (relative path) / ``sqlite:////abs/file.db`` (see
            :func:`sqlite_storage_class`), or a ready ``limits`` ``Storage``.
        clock: the time in seconds since the epoch (for tests; the storage's own expiry of old
            counters keeps using the real time).

    Raises:
        ImportError: ``limits`` is not installed.
        limits.errors.ConfigurationError: the storage URI is not one ``limits`` can use.
    """

    def __init__(
        self,
        default: QuotaPolicy | None = None,
        per_user: Mapping[str, QuotaPolicy] | None = None,
        storage: str | Storage = "memory://",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._default = default or QuotaPolicy()
        self._per_user: dict[str, QuotaPolicy] = dict(per_user or {})
        self._clock = clock
        # _lock serialises the storage's read-modify-write sequences (and may be held while
        # the storage waits for another process); _policies and _queue are only ever held
        # for a moment, so the event loop may take them.
        self._lock = threading.RLock()
        self._policies = threading.Lock()
        self._queue = threading.Lock()
        self._pending: _Pending = {}
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closed = False
        self.storage: Storage = _make_storage(storage)

    # -- policies ---------------------------------------------------------------------------
    @property
    def default(self) -> QuotaPolicy:
        """The policy of users without their own."""
        return self._default

    def set_default(self, policy: QuotaPolicy | None) -> None:
        """Replace the default policy (``None``: unlimited); takes effect at the next call."""
        with self._policies:
            self._default = policy or QuotaPolicy()

    def policy_for(self, user: str) -> QuotaPolicy:
        """The policy that applies to ``user`` now."""
        with self._policies:
            return self._per_user.get(user, self._default)

    def set_policy(self, user: str, policy: QuotaPolicy | None) -> None:
        """Give ``user`` their own policy (``None``: back to the default).

        Takes effect at the user's next call; what they used so far still counts.
        """
        with self._policies:
            if policy is None:
                self._per_user.pop(user, None)
            else:
                self._per_user[user] = policy

    # -- counting ---------------------------------------------------------------------------
    def check(self, user: str, requested_output_tokens: int | None = None) -> int | None:
        """Admit one call of ``user`` or raise :class:`QuotaExceeded`; counts the request.

        Refused when a request now would pass the requests per minute or per day, when a
        token window is used up, or when the call's output cap (``requested_output_tokens``,
        lowered to the policy's ``max_output_tokens_per_call``) is larger than the tokens
        left in a window. A refused call is not counted.

        Returns:
            The output cap the call must run with: the smaller of ``requested_output_tokens``
            and the policy's ``max_output_tokens_per_call``; ``None`` when neither is set.
        """
        requested = self._requested(requested_output_tokens)
        with self._lock:
            policy = self.policy_for(user)
            cap = _cap(requested, policy)
            now = self._clock()
            with self._counters() as counters:
                # What was queued first, in the same transaction: nothing is read stale.
                self._write_pending(counters)
                refusal = self._admit(counters, user, policy, cap, now)
            if refusal is not None:
                raise refusal
            return cap

    def try_check(
        self, user: str, requested_output_tokens: int | None = None
    ) -> tuple[bool, int | None]:
        """:meth:`check` without waiting for the storage, where nothing can refuse the call.

        When ``user``'s policy sets no request or token limit, the call is admitted at once and
        its request is counted in the background (see "Deferred counting" above): returns
        ``(True, cap)`` with the cap :meth:`check` would return. Otherwise nothing is done and
        ``(False, None)`` is returned: call :meth:`check` (which may wait for the storage).
        Never blocks on storage I/O, so an event loop may call it.
        """
        requested = self._requested(requested_output_tokens)
        policy = self.policy_for(user)
        if any(getattr(policy, window.field) is not None for window in _WINDOWS):
            return False, None
        self._defer(user, _REQUEST_WINDOWS, 1)
        return True, _cap(requested, policy)

    def charge(self, user: str, input_tokens: int | None, output_tokens: int | None) -> None:
        """Add the tokens a finished call really used (``None``: not reported, counts 0)."""
        tokens_in = _count(input_tokens, "input_tokens", allow_none=True) or 0
        tokens_out = _count(output_tokens, "output_tokens", allow_none=True) or 0
        if tokens_in < 0 or tokens_out < 0:
            raise ValueError(
                f"token counts must not be negative (got input={tokens_in}, output={tokens_out})"
            )
        total = tokens_in + tokens_out
        if not total:
            return
        with self._lock:
            now = self._clock()
            with self._counters() as counters:
                self._write_pending(counters)
                for window in _TOKEN_WINDOWS:
                    index, end = window.bounds(now)
                    counters.incr(window.key(user, index), _expiry(end, now), amount=total)

    def charge_later(self, user: str, input_tokens: int | None, output_tokens: int | None) -> None:
        """:meth:`charge` without waiting for the storage: the tokens are queued (in the windows
        of now) and written in the background (see "Deferred counting" above). Never blocks on
        storage I/O, so an event loop may call it."""
        tokens_in = _count(input_tokens, "input_tokens", allow_none=True) or 0
        tokens_out = _count(output_tokens, "output_tokens", allow_none=True) or 0
        if tokens_in < 0 or tokens_out < 0:
            raise ValueError(
                f"token counts must not be negative (got input={tokens_in}, output={tokens_out})"
            )
        if tokens_in + tokens_out:
            self._defer(user, _TOKEN_WINDOWS, tokens_in + tokens_out)

    def flush(self) -> None:
        """Write the counts queued by :meth:`try_check` and :meth:`charge_later` now."""
        with self._lock:
            if self._pending:
                with self._counters() as counters:
                    self._write_pending(counters)

    def usage(self, user: str) -> dict[str, WindowUsage]:
        """What ``user`` has used in each current window, keyed by the policy field name."""
        with self._lock:
            self.flush()
            policy = self.policy_for(user)
            now = self._clock()
            result: dict[str, WindowUsage] = {}
            for window in _WINDOWS:
                index, end = window.bounds(now)
                used = self.storage.get(window.key(user, index))
                allowed = getattr(policy, window.field)
                result[window.field] = WindowUsage(
                    used=used,
                    limit=allowed,
                    remaining=None if allowed is None else max(0, allowed - used),
                    resets_at=datetime.fromtimestamp(end, UTC),
                )
            return result

    def reset(self, user: str) -> None:
        """Forget what ``user`` used in the current windows (an operator's override)."""
        with self._lock:
            self.flush()
            now = self._clock()
            for window in _WINDOWS:
                self.storage.clear(window.key(user, window.bounds(now)[0]))

    def close(self) -> None:
        """Write the queued counts, then release the storage's resources where it has any (the
        SQLite connection)."""
        with self._queue:
            self._closed = True
            writer = self._writer
        if writer is not None:
            self._wake.set()
            writer.join()
        try:
            self.flush()
        except Exception:
            logger.exception("quota counts could not be written: %s", self._pending)
            raise
        finally:
            close = getattr(self.storage, "close", None)
            if callable(close):
                close()

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _requested(requested_output_tokens: int | None) -> int | None:
        requested = _count(requested_output_tokens, "requested_output_tokens", allow_none=True)
        if requested is not None and requested < 1:
            raise ValueError(f"requested_output_tokens must be at least 1 (got {requested})")
        return requested

    def _counters(self) -> contextlib.AbstractContextManager[_Counters]:
        """The storage, or one transaction of it where it has them (the SQLite storage: a whole
        check is then one write transaction instead of one per counter)."""
        if isinstance(self.storage, _SQLiteCounters):
            return self.storage.transaction()
        return contextlib.nullcontext(self.storage)

    def _admit(
        self, counters: _Counters, user: str, policy: QuotaPolicy, cap: int | None, now: float
    ) -> QuotaExceeded | None:
        """Count one request of ``user``, or the refusal (then nothing is counted)."""
        for window in _TOKEN_WINDOWS:
            allowed = getattr(policy, window.field)
            if allowed is None:
                continue
            index, end = window.bounds(now)
            used = counters.get(window.key(user, index))
            left = allowed - used
            if left <= 0:
                return self._exceeded(user, window, allowed, now, used=used)
            if cap is not None and cap > left:
                return self._exceeded(user, window, allowed, now, used=used, requested=cap)
        counted: list[str] = []
        refusal = None
        try:
            for window in _REQUEST_WINDOWS:
                index, end = window.bounds(now)
                key = window.key(user, index)
                count = counters.incr(key, _expiry(end, now), amount=1)
                counted.append(key)
                allowed = getattr(policy, window.field)
                if allowed is not None and count > allowed:
                    refusal = self._exceeded(user, window, allowed, now, used=count - 1)
                    break
        except BaseException:
            if counters is self.storage:  # a transaction is rolled back as a whole
                for done in counted:
                    self._uncount(counters, done, 1)
            raise
        if refusal is not None:  # a refused request is not counted
            for done in counted:
                self._uncount(counters, done, 1)
        return refusal

    def _uncount(self, counters: _Counters, key: str, amount: int) -> None:
        decr = getattr(counters, "decr", None)
        if callable(decr):
            decr(key, amount)
        else:  # Redis and others: INCRBY with a negative amount
            counters.incr(key, 1, amount=-amount)

    # -- deferred counts ----------------------------------------------------------------------
    def _defer(self, user: str, windows: tuple[_Window, ...], amount: int) -> None:
        """Queue ``amount`` for ``user``'s current ``windows``; the writer thread adds it."""
        now = self._clock()
        with self._queue:
            for window in windows:
                index, end = window.bounds(now)
                key = window.key(user, index)
                entry = self._pending.get(key)
                if entry is None:
                    self._pending[key] = [amount, end]
                else:
                    entry[0] += amount
            closed = self._closed
            if not closed and self._writer is None:
                self._start_writer()
        if closed:  # used after close(): written at once, as check() and charge() do
            self.flush()
        elif not self._wake.is_set():
            self._wake.set()

    def _take_pending(self) -> _Pending:
        with self._queue:
            pending, self._pending = self._pending, {}
        return pending

    def _restore_pending(self, pending: _Pending) -> None:
        with self._queue:
            for key, (amount, end) in pending.items():
                entry = self._pending.get(key)
                if entry is None:
                    self._pending[key] = [amount, end]
                else:
                    entry[0] += amount

    def _write_pending(self, counters: _Counters) -> None:
        """Add the queued counts to ``counters`` (the caller holds ``_lock``). Counts of a
        window that has ended meanwhile are dropped (nothing reads that window any more)."""
        pending = self._take_pending()
        if not pending:
            return
        on_rollback = getattr(counters, "on_rollback", None)
        if callable(on_rollback):
            # A transaction is undone as a whole: then every count is queued again.
            on_rollback(lambda: self._restore_pending(pending))
        now = self._clock()
        left = dict(pending)
        try:
            for key, (amount, end) in pending.items():
                if end > now:
                    counters.incr(key, _expiry(end, now), amount=int(amount))
                del left[key]
        except BaseException:
            if not callable(on_rollback):  # a plain storage keeps what it wrote
                self._restore_pending(left)
            raise

    FLUSH_DELAY = 0.005
    """Seconds the writer thread waits after the first queued count, gathering a batch."""

    def _start_writer(self) -> None:
        def on_exit(manager: QuotaManager) -> None:
            manager._closed = True
            manager._wake.set()
            with contextlib.suppress(Exception):
                manager.flush()

        self._writer = start_flusher(
            self,
            self._wake,
            name="quota-counts",
            what="quota counts",
            done=lambda manager: manager._closed,
            on_exit=on_exit,
            delay=QuotaManager.FLUSH_DELAY,
        )

    def _exceeded(
        self,
        user: str,
        window: _Window,
        allowed: int,
        now: float,
        *,
        used: int,
        requested: int | None = None,
    ) -> QuotaExceeded:
        _, end = window.bounds(now)
        return QuotaExceeded(
            user,
            window.label,
            allowed,
            datetime.fromtimestamp(end, UTC),
            max(0.0, end - now),
            window=window.field,
            used=used,
            requested=requested,
        )


def _cap(requested: int | None, policy: QuotaPolicy) -> int | None:
    caps = [c for c in (requested, policy.max_output_tokens_per_call) if c is not None]
    return min(caps) if caps else None


def _expiry(end: float, now: float) -> int:
    """Seconds a counter must live: to the end of its window (at least 1)."""
    return max(1, math.ceil(end - now))


def _make_storage(storage: str | Storage) -> Storage:
    try:
        import limits.storage
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    if not isinstance(storage, str):
        return storage
    if urllib.parse.urlparse(storage).scheme == "sqlite":
        sqlite_storage_class()  # registers the scheme with limits
    made = limits.storage.storage_from_string(storage)
    if not isinstance(made, limits.storage.Storage):
        raise ValueError(f"{storage!r} is an async storage; QuotaManager needs a sync one")
    return made


# -- the SQLite storage ---------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS limits_counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS limits_counters_expires_at ON limits_counters (expires_at);
"""

_INCR = """
INSERT INTO limits_counters (key, value, expires_at) VALUES (:key, :amount, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN expires_at <= :now THEN excluded.value ELSE value + excluded.value END,
    expires_at = CASE WHEN expires_at <= :now THEN excluded.expires_at ELSE expires_at END
"""


def sqlite_path(uri: str) -> str:
    """The file of a ``sqlite:`` storage URI, SQLAlchemy style.

    ``sqlite:///quotas.db`` is relative to the working directory, ``sqlite:////var/lib/x.db``
    is absolute (so ``f"sqlite:///{path}"`` is right for either kind of ``path``). A ``~`` is
    expanded; a query string (``?...``) is ignored.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        raise ValueError(
            f"SQLite storage URI must look like sqlite:///relative.db or "
            f"sqlite:////absolute/path.db (got {uri!r})"
        )
    path = urllib.parse.unquote(uri[len(prefix) :].partition("?")[0])
    if not path or path == ":memory:":
        raise ValueError(
            f"SQLite storage needs a file (got {uri!r}); for counters in this process only "
            "use memory://"
        )
    return str(Path(path).expanduser())


class _SQLiteCounters:
    """Fixed-window counters with expiry in one SQLite file (the body of ``SQLiteStorage``).

    One row per key: ``(key, value, expires_at)``. ``incr`` is one ``INSERT … ON CONFLICT DO
    UPDATE`` inside ``BEGIN IMMEDIATE``, which takes the database's write lock, so increments
    from any number of threads and processes are serialised and none is lost; a row past its
    ``expires_at`` counts as absent (its next ``incr`` starts it again) and expired rows are
    deleted now and then. The file is in WAL mode (readers never wait for the writer) with
    ``synchronous=NORMAL``: a committed increment survives the process crashing or being
    restarted (only a power loss can drop the last few). Each process opens its own
    connection (one shared by its threads under a lock; a forked child opens a new one) and
    waits up to ``timeout`` seconds for another process's write lock.
    """

    path: str
    timeout: float
    _guard: threading.Lock
    _conn: sqlite3.Connection | None
    _pid: int
    _writes: int
    _inherited: list[sqlite3.Connection]
    _time: Callable[[], float]

    CLEANUP_EVERY = 256
    """Delete expired rows every this many increments (and when the file is opened)."""

    def _setup(self, uri: str | None, options: Mapping[str, Any]) -> None:
        self.path = sqlite_path(uri or "")
        self.timeout = float(options.get("timeout", 30.0))
        self._guard = threading.Lock()
        self._conn = None
        self._pid = 0
        self._writes = 0
        self._inherited = []
        self._time = time.time
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._guard:
            self._connection()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """What ``limits`` wraps in ``StorageError`` when asked to (``wrap_exceptions``)."""
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        if self._conn is not None:
            # Inherited through fork: never use it here, and never close it either (that could
            # release locks its parent holds); keep it referenced so it is not collected.
            self._inherited.append(self._conn)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                # Switching to WAL needs a moment alone with the file and can fail at once with
                # "database is locked" while another process opens it: retry until the timeout.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                conn.execute("DELETE FROM limits_counters WHERE expires_at <= ?", (self._time(),))
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    conn.close()
                    raise
                if time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.01)
        self._conn, self._pid = conn, pid
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._guard:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._guard:
            row = self._connection().execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SQLiteTransaction]:
        """Several counter operations in one write transaction (one ``BEGIN IMMEDIATE``):
        atomic together, and far cheaper than a transaction each. Rolled back as a whole when
        the block raises."""
        with self._guard:
            conn = self._connection()
            txn = _SQLiteTransaction(self, conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield txn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                txn.rolled_back()
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                txn.rolled_back()
                raise

    def _incr(self, conn: sqlite3.Connection, key: str, expiry: int, amount: int) -> int:
        now = self._time()
        conn.execute(_INCR, {"key": key, "amount": amount, "expires_at": now + expiry, "now": now})
        value = conn.execute("SELECT value FROM limits_counters WHERE key = ?", (key,)).fetchone()[
            0
        ]
        self._writes += 1
        if self._writes % self.CLEANUP_EVERY == 0:
            conn.execute("DELETE FROM limits_counters WHERE expires_at <= ?", (now,))
        return int(value)

    def _decr(self, conn: sqlite3.Connection, key: str, amount: int) -> int:
        now = self._time()
        conn.execute(
            "UPDATE limits_counters SET value = MAX(value - ?, 0) WHERE key = ? AND expires_at > ?",
            (amount, key, now),
        )
        row = conn.execute(
            "SELECT value FROM limits_counters WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _get(self, conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute(
            "SELECT value FROM limits_counters WHERE key = ? AND expires_at > ?",
            (key, self._time()),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s counter; a new (or expired) one lives ``expiry`` s."""
        with self._write() as conn:
            return self._incr(conn, key, expiry, amount)

    def decr(self, key: str, amount: int = 1) -> int:
        """Take ``amount`` off ``key``'s counter (never below 0)."""
        with self._write() as conn:
            return self._decr(conn, key, amount)

    def get(self, key: str) -> int:
        """The counter of ``key`` (0 when absent or expired)."""
        with self._guard:
            return self._get(self._connection(), key)

    def get_expiry(self, key: str) -> float:
        """When ``key``'s counter expires (now, when it does not exist)."""
        now = self._time()
        value = self._read(
            "SELECT expires_at FROM limits_counters WHERE key = ? AND expires_at > ?", (key, now)
        )
        return now if value is None else float(value)

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            self._read("SELECT 1", ())
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Delete every counter; returns how many there were."""
        with self._write() as conn:
            return conn.execute("DELETE FROM limits_counters").rowcount

    def clear(self, key: str) -> None:
        """Delete ``key``'s counter."""
        with self._write() as conn:
            conn.execute("DELETE FROM limits_counters WHERE key = ?", (key,))

    def close(self) -> None:
        """Close this process's connection (it is opened again when needed)."""
        with self._guard:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


class _SQLiteTransaction:
    """The counters of :meth:`_SQLiteCounters.transaction`, inside its one transaction."""

    def __init__(self, counters: _SQLiteCounters, conn: sqlite3.Connection) -> None:
        self._counters = counters
        self._conn = conn
        self._undo: list[Callable[[], None]] = []

    def get(self, key: str) -> int:
        return self._counters._get(self._conn, key)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._counters._incr(self._conn, key, expiry, amount)

    def decr(self, key: str, amount: int = 1) -> int:
        return self._counters._decr(self._conn, key, amount)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` if the transaction is rolled back."""
        self._undo.append(callback)

    def rolled_back(self) -> None:
        for callback in self._undo:
            callback()


@functools.cache
def sqlite_storage_class() -> type[Storage]:
    """The ``limits`` storage for ``sqlite:///path.db`` URIs, registered with ``limits``.

    ``limits`` stores counters in memory, Redis, Memcached, MongoDB or Valkey, but not in a
    file. The gateway service runs as one process (or a few on one host) and must keep users'
    daily quotas across restarts and deploys; a SQLite file does that with nothing to run
    beside it. The class is a proper ``limits.storage.Storage`` for the fixed-window strategy
    (``incr``/``get``/``get_expiry``/``clear``/``reset``/``check``, plus ``decr``), so after
    this has run ``limits.storage.storage_from_string("sqlite:///x.db")`` and
    ``limits.strategies.FixedWindowRateLimiter`` work with it too. See
    :class:`_SQLiteCounters` for the design; the URI is read by :func:`sqlite_path`. Options:
    ``timeout`` (seconds to wait for another process's write lock; default 30).

    Built on first use, so that ``limits`` is imported only then.
    """
    try:
        from limits.storage import Storage
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    class SQLiteStorage(_SQLiteCounters, Storage):
        """Fixed-window counters in a SQLite file; see :func:`sqlite_storage_class`."""

        STORAGE_SCHEME = ["sqlite"]  # noqa: RUF012 (limits' own declaration)

        def __init__(
            self,
            uri: str | None = None,
            wrap_exceptions: bool = False,
            **options: float | str | bool,
        ) -> None:
            Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions, **options)
            self._setup(uri, options)

    return SQLiteStorage
