"""The quota manager: policies per user and the counters in a ``limits`` storage (see the
package's documentation for the windows, what is checked when, and deferred counting)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from consortium_lab.gateway.flusher import Flusher
from consortium_lab.gateway.quotas.policy import (
    REQUEST_WINDOWS,
    TOKEN_WINDOWS,
    WINDOWS,
    QuotaExceeded,
    QuotaPolicy,
    Window,
    WindowUsage,
)
from consortium_lab.gateway.quotas.storage_sqlite import (
    INSTALL_HINT,
    SQLiteCounters,
    sqlite_storage_class,
)

if TYPE_CHECKING:
    from limits.storage import Storage

logger = logging.getLogger(__name__)


class _Counters(Protocol):
    """What :class:`QuotaManager` needs of a storage: a ``limits`` storage, or one transaction
    of the SQLite storage (:meth:`SQLiteCounters.transaction`)."""

    def get(self, key: str) -> int: ...

    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...


_Pending = dict[str, list[float]]
"""Queued increments: counter key -> ``[amount, end of its window]``."""


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

    FLUSH_DELAY = 0.005
    """Seconds the writer thread waits after the first queued count, gathering a batch."""

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
        self._flusher = Flusher(
            self,
            lock=self._queue,
            name="quota-counts",
            what="quota counts",
            lost=lambda manager: manager._pending,
            delay=self.FLUSH_DELAY,
        )
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
        if any(getattr(policy, window.field) is not None for window in WINDOWS):
            return False, None
        self._defer(user, REQUEST_WINDOWS, 1)
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
                for window in TOKEN_WINDOWS:
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
            self._defer(user, TOKEN_WINDOWS, tokens_in + tokens_out)

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
            for window in WINDOWS:
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
            for window in WINDOWS:
                self.storage.clear(window.key(user, window.bounds(now)[0]))

    def close(self) -> None:
        """Write the queued counts, then release the storage's resources where it has any (the
        SQLite connection)."""
        try:
            self._flusher.close()
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
        if isinstance(self.storage, SQLiteCounters):
            return self.storage.transaction()
        return contextlib.nullcontext(self.storage)

    def _admit(
        self, counters: _Counters, user: str, policy: QuotaPolicy, cap: int | None, now: float
    ) -> QuotaExceeded | None:
        """Count one request of ``user``, or the refusal (then nothing is counted)."""
        for window in TOKEN_WINDOWS:
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
            for window in REQUEST_WINDOWS:
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
    def _defer(self, user: str, windows: tuple[Window, ...], amount: int) -> None:
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
        if not self._flusher.wake():  # used after close(): written at once, as check() does
            self.flush()

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

    def _exceeded(
        self,
        user: str,
        window: Window,
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
        raise ImportError(INSTALL_HINT) from exc
    if not isinstance(storage, str):
        return storage
    if urllib.parse.urlparse(storage).scheme == "sqlite":
        sqlite_storage_class()  # registers the scheme with limits
    made = limits.storage.storage_from_string(storage)
    if not isinstance(made, limits.storage.Storage):
        raise ValueError(f"{storage!r} is an async storage; QuotaManager needs a sync one")
    return made
