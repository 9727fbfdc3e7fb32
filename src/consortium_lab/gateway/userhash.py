"""The one pseudonym of a user name: HMAC-SHA256 keyed by an operator's secret.

The gateway writes it into usage records when a user deletes their data (``DELETE
/v1/me/data``), and the admin analytics' "hash user names" switch shows the same value, so a
deleted user's past usage still adds up under one stable name that cannot be turned back into
theirs without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["USER_HASH_PREFIX", "is_user_hash", "user_hash"]

USER_HASH_PREFIX = "anon-"
"""Every pseudonym starts with this, so it is never mistaken for a real user name."""

_HEX_CHARS = 24  # 96 bits: no collision among any realistic number of users


def user_hash(name: str, secret: str | bytes) -> str:
    """The pseudonym of ``name`` under ``secret`` (``anon-`` and 24 hex digits).

    Raises:
        ValueError: the secret is empty (a pseudonym without a secret is a plain hash that
            anyone can recompute from a list of names).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the user hash needs a non-empty secret")
    digest = hmac.new(key, name.encode(), hashlib.sha256).hexdigest()
    return USER_HASH_PREFIX + digest[:_HEX_CHARS]


def is_user_hash(name: str) -> bool:
    """Whether ``name`` looks like a pseudonym made by :func:`user_hash`."""
    rest = name.removeprefix(USER_HASH_PREFIX)
    return rest != name and len(rest) == _HEX_CHARS and all(c in "0123456789abcdef" for c in rest)
