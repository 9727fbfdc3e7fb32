"""The ledger in Redis: the backend of several gateway replicas (``pip install redis``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from consortium_lab.gateway.ledger.audit import AuditEntry
from consortium_lab.gateway.ledger.base import EntryKind, Ledger
from consortium_lab.gateway.ledger.usage import UsageFilter, UsageRecord, aggregate

__all__ = ["RedisLedger", "RedisUnreachable", "mask_url", "redis_address"]

# Rewrites the usage stream with one user's name replaced, inside Redis so no record added
# meanwhile is lost. Stream entries cannot be edited in place, so every entry is copied, with
# its own id, to a new key that then replaces the stream. The record is the JSON that
# record_many wrote, whose "user" field follows "time": the exact encoded name (ARGV) is
# replaced as plain text, so nothing else of the record is re-encoded.
_RENAME_SCRIPT = """
local src, tmp = KEYS[1], KEYS[2]
local old, new = ARGV[1], ARGV[2]
local changed, cursor = 0, '-'
redis.call('DEL', tmp)
while true do
  local batch = redis.call('XRANGE', src, cursor, '+', 'COUNT', 1000)
  if #batch == 0 then break end
  for _, item in ipairs(batch) do
    local id, fields = item[1], item[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'record' then
        local s, e = string.find(fields[i + 1], old, 1, true)
        if s then
          fields[i + 1] = string.sub(fields[i + 1], 1, s - 1) .. new
            .. string.sub(fields[i + 1], e + 1)
          changed = changed + 1
        end
      end
    end
    redis.call('XADD', tmp, id, unpack(fields))
    cursor = '(' .. id
  end
end
if redis.call('EXISTS', tmp) == 1 then redis.call('RENAME', tmp, src) end
return changed
"""


def mask_url(url: str) -> str:
    """``url`` with its password (and a user name's password part) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be read>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redis_address(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisUnreachable(ConnectionError):
    """Redis did not answer (or refused the password): the message names host:port only."""


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

    def _purge_usage(self, before: float) -> int:
        # A record's own time decides, not its stream id (the server's clock when it was
        # written, which for a record written late or copied in says nothing), so the whole
        # stream is read: about a second per million records, once an hour.
        key, removed, cursor = self._key("usage"), 0, "-"
        while True:
            batch = self._redis.xrange(key, min=cursor, max="+", count=1000)
            if not batch:
                return removed
            old = [i for i, f in batch if json.loads(f["record"])["time"] < before]
            if old:
                removed += int(self._redis.xdel(key, *old))
            cursor = "(" + batch[-1][0]

    def _rename_user(self, user: str, alias: str) -> int:
        old = f'"user": {json.dumps(user)}, '
        new = f'"user": {json.dumps(alias)}, '
        keys = [self._key("usage"), self._key("usage:rewrite")]
        return int(self._redis.eval(_RENAME_SCRIPT, len(keys), *keys, old, new))

    def _append_audit(self, make: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        import redis

        head = self._key("audit:head")
        while True:  # optimistic: another replica appending meanwhile makes us read again
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(head)
                    raw = pipe.get(head)
                    entry = make(AuditEntry.from_json(raw) if raw else None)
                    pipe.multi()
                    pipe.xadd(self._key("audit"), {"entry": entry.to_json()})
                    pipe.set(head, entry.to_json())
                    pipe.execute()
                    return entry
                except redis.WatchError:
                    time.sleep(0.001)

    def _first_seen(self, key: str) -> bool:
        return bool(self._redis.sadd(self._key("audit:seen"), key))

    def audit_entries(self, *, after: int = 0, limit: int | None = None) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        cursor = "-"
        while limit is None or len(found) < limit:
            batch = self._redis.xrange(self._key("audit"), min=cursor, max="+", count=1000)
            if not batch:
                break
            for _id, fields in batch:
                entry = AuditEntry.from_json(fields["entry"])
                if entry.seq > after and (limit is None or len(found) < limit):
                    found.append(entry)
            cursor = "(" + batch[-1][0]
        return found

    def connect_check(self) -> None:
        """Ask Redis once; raise :class:`RedisUnreachable` naming host:port when it fails."""
        import redis

        try:
            self._redis.ping()
        except redis.AuthenticationError:
            raise RedisUnreachable(
                f"Redis at {redis_address(self.url)} refused the password (check the URL)"
            ) from None
        except (redis.RedisError, OSError) as exc:
            reason = str(exc).replace(self.url, mask_url(self.url)) or type(exc).__name__
            raise RedisUnreachable(
                f"cannot reach Redis at {redis_address(self.url)}: {reason}"
            ) from None

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
