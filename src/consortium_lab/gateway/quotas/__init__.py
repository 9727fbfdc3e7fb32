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

from consortium_lab.gateway.quotas.manager import QuotaManager
from consortium_lab.gateway.quotas.policy import QuotaExceeded, QuotaPolicy, WindowUsage
from consortium_lab.gateway.quotas.storage_sqlite import sqlite_path, sqlite_storage_class

__all__ = [
    "QuotaExceeded",
    "QuotaManager",
    "QuotaPolicy",
    "WindowUsage",
    "sqlite_path",
    "sqlite_storage_class",
]
