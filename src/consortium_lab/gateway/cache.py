"""The gateway's response cache: diskcache on one machine, Redis when several share it.

A cache entry is one complete model answer. The key covers everything that shapes the answer:
the model, the member's instance number, its options, system prompt, prompt and its
conversation so far (and, in the gateway service, the user unless sharing is switched on). A
stream that was cut midway is never stored. Later iterations miss by design: their prompts
embed the previous synthesis.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

KEY_VERSION = 1
"""Bumped when the key's recipe changes, so old entries are simply never hit again."""


class CachedAnswer(BaseModel):
    """What is stored for one answer."""

    text: str
    reasoning: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    served_by: str
    response_id: str | None = None


class ResponseCache(Protocol):
    """A cache backend (all methods are blocking; the gateway calls them off the event loop)."""

    def get(self, key: str) -> CachedAnswer | None: ...

    def set(
        self, key: str, value: CachedAnswer, ttl: float | None, user: str | None = None
    ) -> None: ...

    def delete(self, key: str) -> None: ...

    def delete_user(self, user: str) -> int:
        """Delete every entry stored for ``user``; how many."""
        ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


def cache_key(
    *,
    model: str,
    instance: int,
    stage: str,
    prompt: str,
    system: str | None,
    history: tuple[tuple[str, str], ...],
    options: dict[str, Any],
    user: str | None,
    sample: str | None = None,
) -> str:
    """A stable digest of everything that shapes an answer. ``sample`` (a repeated sample's
    name) joins the key only when given, so keys of unsampled calls are unchanged."""
    fields: dict[str, Any] = {
        "v": KEY_VERSION,
        "model": model,
        "instance": instance,
        "stage": stage,
        "prompt": prompt,
        "system": system,
        "history": [list(turn) for turn in history],
        "options": options,
        "user": user,
    }
    if sample is not None:
        fields["sample"] = sample
    material = json.dumps(
        fields,
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


class DiskResponseCache:
    """diskcache (SQLite files in a folder): safe across processes on one machine."""

    def __init__(self, path: str | Path) -> None:
        import diskcache

        self.path = Path(path)
        self._cache = diskcache.Cache(str(self.path))

    def get(self, key: str) -> CachedAnswer | None:
        raw = self._cache.get(key)
        return CachedAnswer.model_validate_json(raw) if raw is not None else None

    def set(
        self, key: str, value: CachedAnswer, ttl: float | None, user: str | None = None
    ) -> None:
        # The user is the entry's tag, so one user's entries can be found (keys are digests).
        self._cache.set(key, value.model_dump_json(), expire=ttl, tag=user)

    def delete(self, key: str) -> None:
        self._cache.delete(key)

    def delete_user(self, user: str) -> int:
        """Delete every entry stored for ``user`` (by its tag); how many."""
        import sqlite3

        removed = int(self._cache.evict(user))
        # Deleted rows linger in the file's free pages and in its WAL until both are rewritten.
        conn = sqlite3.connect(str(self.path / "cache.db"), timeout=60, isolation_level=None)
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return removed

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()


class RedisResponseCache:
    """Redis, for several gateway replicas sharing one cache (``redis://host:port/db``)."""

    def __init__(self, url: str, prefix: str = "consortium_lab:cache:") -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url)

    def get(self, key: str) -> CachedAnswer | None:
        raw = self._redis.get(self.prefix + key)
        return CachedAnswer.model_validate_json(raw) if raw is not None else None

    def set(
        self, key: str, value: CachedAnswer, ttl: float | None, user: str | None = None
    ) -> None:
        # Redis wants whole milliseconds; a sub-millisecond TTL would mean "already expired".
        px = max(1, int(ttl * 1000)) if ttl is not None else None
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self.prefix + key, value.model_dump_json(), px=px)
        if user is not None:
            # A set of the user's keys, so one user's entries can be found (keys are digests);
            # it holds keys only, and outlives them by at most the longest TTL.
            index = self._user_index(user)
            pipe.sadd(index, key)
            if px is not None:
                pipe.pexpire(index, px, gt=True)
                pipe.pexpire(index, px, nx=True)
            else:
                pipe.persist(index)
        pipe.execute()

    def _user_index(self, user: str) -> str:
        return f"{self.prefix}user:{hashlib.sha256(user.encode()).hexdigest()}"

    def delete(self, key: str) -> None:
        self._redis.delete(self.prefix + key)

    def delete_user(self, user: str) -> int:
        """Delete every entry stored for ``user`` (through its index set); how many."""
        index = self._user_index(user)
        keys = [k.decode() if isinstance(k, bytes) else k for k in self._redis.smembers(index)]
        removed = 0
        for start in range(0, len(keys), 500):
            chunk = [self.prefix + k for k in keys[start : start + 500]]
            removed += int(self._redis.delete(*chunk))
        self._redis.delete(index)
        return removed

    def clear(self) -> None:
        for key in self._redis.scan_iter(match=self.prefix + "*", count=500):
            self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()


def open_cache(spec: str | Path) -> ResponseCache:
    """A backend from a folder path or a ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    text = str(spec)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisResponseCache(text)
    return DiskResponseCache(Path(text).expanduser())
