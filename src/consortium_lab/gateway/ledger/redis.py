"""The ledger in Redis: the backend of several gateway replicas (``pip install redis``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

from consortium_lab.gateway.ledger.base import EntryKind, Ledger
from consortium_lab.gateway.ledger.usage import UsageFilter, UsageRecord, aggregate

__all__ = ["RedisLedger"]


class RedisLedger(Ledger):
    """The ledger in Redis, shared by several gateway replicas (``pip install redis``).

    Keys (all under ``prefix``): ``usage`` (a stream of records, trimmed to about
    ``max_records``), ``quotas`` and ``acl`` (hashes of JSON by subject) and ``revision`` (a
    counter). Quota counters use the same server through ``limits``' Redis storage. Usage
    aggregates are computed here from the stream (a ``since`` bound skips older entries), so
    keep ``max_records`` in proportion.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "consortium_lab:ledger:",
        max_records: int = 1_000_000,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ImportError(
                "the Redis ledger needs the 'redis' package: pip install 'consortium-lab[redis]'"
            ) from exc
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.max_records = max_records
        # Typed as Any: redis-py's stubs cannot tell that decode_responses gives str.
        self._redis: Any = redis.Redis.from_url(url, decode_responses=True)
        self.quota_storage = url

    def _key(self, name: str) -> str:
        return self.prefix + name

    def record_many(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            fields = {"record": json.dumps(asdict(record))}
            pipe.xadd(self._key("usage"), fields, maxlen=self.max_records, approximate=True)
        pipe.execute()

    def _scan(self, where: UsageFilter, *, reverse: bool = False) -> Iterator[UsageRecord]:
        # Stream ids are the Redis server's clock in ms. They narrow a ``since`` scan, with an
        # hour's margin for replicas whose clocks differ from the server's; the records' own
        # times decide what matches.
        low = "-" if where.since is None else str(max(0, int((where.since - 3600) * 1000)))
        high = "+"
        cursor_low, cursor_high = low, high
        while True:
            if reverse:
                batch = self._redis.xrevrange(
                    self._key("usage"), max=cursor_high, min=low, count=1000
                )
            else:
                batch = self._redis.xrange(self._key("usage"), min=cursor_low, max=high, count=1000)
            if not batch:
                return
            for _entry_id, fields in batch:
                rec = UsageRecord(**json.loads(fields["record"]))
                if where.matches(rec):
                    yield rec
            last = batch[-1][0]
            if reverse:
                cursor_high = "(" + last
            else:
                cursor_low = "(" + last

    def _select(self, where: UsageFilter, limit: int) -> list[UsageRecord]:
        found: list[UsageRecord] = []
        for rec in self._scan(where, reverse=True):
            if len(found) >= limit:
                break
            found.append(rec)
        return found

    def _aggregate(self, where: UsageFilter, fields: list[str]) -> list[dict[str, Any]]:
        return aggregate(self._scan(where), fields)

    def _entries(self, kind: EntryKind) -> dict[str, str]:
        entries: dict[str, str] = self._redis.hgetall(self._key(kind))
        return entries

    def _set_entry(self, kind: EntryKind, subject: str, value: str | None) -> None:
        pipe = self._redis.pipeline(transaction=True)
        if value is None:
            pipe.hdel(self._key(kind), subject)
        else:
            pipe.hset(self._key(kind), subject, value)
        pipe.incr(self._key("revision"))
        pipe.execute()

    def revision(self) -> int:
        value = self._redis.get(self._key("revision"))
        return int(value) if value is not None else 0

    def check(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:
            return False

    def _disconnect(self) -> None:
        self._redis.close()
