"""Reminders in Redis (cluster mode): any node adds, lists and cancels; one node fires.

    picobot:schedule:ids          counter: entry ids
    picobot:schedule:entries      hash: id -> JSON (everything but the due time)
    picobot:schedule:due          sorted set: id -> next due time (the firing order)
    picobot:schedule:chat:<chat>  set of the chat's ids (listing, `schedule.max_per_chat`)

The same `EntryStore` as the SQLite one. Adding checks the chat's limit and writes all three
in one Lua script. Firing writes (`may_fire`, `fired`) are fenced by the `scheduler` lease's
token when a lease is given: a holder paused past its lease cannot fire or advance an entry
after another node took over.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from picobot.cluster import cancellable, key
from picobot.cluster.lease import FENCE_CHECK, Lease
from picobot.storage.schedule import Entry, chat_key

IDS = key("schedule", "ids")
ENTRIES = key("schedule", "entries")
DUE = key("schedule", "due")

# KEYS: ids, entries, due, chat set. ARGV: limit, JSON, due.
_ADD = """
if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[1]) then return false end
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], id)
redis.call('SADD', KEYS[4], id)
return id
"""
# KEYS: entries, due, chat set. ARGV: id.
_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""
# KEYS: fence, entries, due, chat set. ARGV: token, id, next due ('' deletes).
_FIRED = """
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('SREM', KEYS[4], ARGV[2])
else
  redis.call('ZADD', KEYS[3], 'XX', ARGV[3], ARGV[2])
end
return 1
"""
# KEYS: fence, due. ARGV: token, id. The due time as stored (nil: cancelled).
_DUE_OF = "return redis.call('ZSCORE', KEYS[2], ARGV[2])"
_NO_FENCE = "-"  # for a store without a lease (tests, one node): KEYS[1] is never read


def _chat_set(chat: str) -> str:
    return key("schedule", "chat", chat)


class RedisScheduleStore:
    """`EntryStore` over Redis. The client belongs to the caller; `lease` (the `scheduler`
    lease) fences the firing writes, None leaves them unfenced."""

    def __init__(self, redis: Redis, lease: Lease | None = None) -> None:
        self.redis = redis
        self.lease = lease
        fence = FENCE_CHECK if lease is not None else ""
        self._add = redis.register_script(_ADD)
        self._delete = redis.register_script(_DELETE)
        self._fired = redis.register_script(fence + _FIRED)
        self._due_of = redis.register_script(fence + _DUE_OF)

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def add(
        self,
        *,
        channel: str,
        chat_id: str,
        thread: str | None,
        is_group: bool,
        text: str,
        cron: str | None,
        run_agent: bool,
        due: float,
        limit: int,
    ) -> Entry | None:
        fields = {
            "channel": channel,
            "chat_id": chat_id,
            "thread": thread,
            "is_group": is_group,
            "text": text,
            "cron": cron,
            "run_agent": run_agent,
            "created": time.time(),
        }
        keys = [IDS, ENTRIES, DUE, _chat_set(chat_key(channel, chat_id))]
        entry_id = await cancellable(
            self._add(keys=keys, args=[limit, json.dumps(fields), repr(due)])
        )
        return None if entry_id is None else _entry(int(entry_id), fields, due)

    async def get(self, entry_id: int) -> Entry | None:
        return next(iter(await self._entries([str(entry_id)])), None)

    async def for_chat(self, chat: str) -> list[Entry]:
        ids: set[str] = await cancellable(_wait(self.redis.smembers(_chat_set(chat))))
        return await self._entries(sorted(ids))

    async def due(self, now: float) -> list[Entry]:
        ids = await cancellable(_wait(self.redis.zrangebyscore(DUE, "-inf", repr(now))))
        return await self._entries(ids)

    async def next_due(self, after: float) -> float | None:
        found = await cancellable(
            _wait(
                self.redis.zrangebyscore(
                    DUE, f"({after!r}", "+inf", start=0, num=1, withscores=True
                )
            )
        )
        return float(found[0][1]) if found else None

    async def _entries(self, ids: list[str]) -> list[Entry]:
        """The entries of `ids` that exist, soonest first (ties: by id)."""
        if not ids:
            return []
        values, dues = await cancellable(self._read(ids))
        found = [
            _entry(int(i), json.loads(v), float(d))
            for i, v, d in zip(ids, values, dues, strict=True)
            if v is not None and d is not None
        ]
        return sorted(found, key=lambda e: (e.due, e.id))

    async def _read(self, ids: list[str]) -> list[Any]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(ENTRIES, ids)
            pipe.zmscore(DUE, ids)
            return await pipe.execute()

    async def delete(self, entry_id: int) -> bool:
        entry = await self.get(entry_id)
        if entry is None:
            return False
        keys = [ENTRIES, DUE, _chat_set(entry.chat)]
        return bool(await cancellable(self._delete(keys=keys, args=[entry_id])))

    async def may_fire(self, entry: Entry) -> bool:
        fence = self._fence()
        if fence is None:
            return False
        try:
            due = await cancellable(self._due_of(keys=[fence[0], DUE], args=[fence[1], entry.id]))
        except ResponseError as exc:
            if "FENCED" in str(exc):
                return False
            raise
        return due is not None and float(due) == entry.due

    async def fired(self, entry: Entry, next_due: float | None) -> bool:
        fence = self._fence()
        if fence is None:
            return False
        keys = [fence[0], ENTRIES, DUE, _chat_set(entry.chat)]
        nxt = "" if next_due is None else repr(next_due)
        try:
            return bool(await cancellable(self._fired(keys=keys, args=[fence[1], entry.id, nxt])))
        except ResponseError as exc:
            if "FENCED" in str(exc):
                return False
            raise

    def _fence(self) -> tuple[str, int | str] | None:
        """The fence's key and token; None if this node does not hold the lease."""
        if self.lease is None:
            return _NO_FENCE, _NO_FENCE
        fence = self.lease.fence
        return None if fence is None else (fence.key, fence.token)

    async def count(self) -> int:
        return int(await cancellable(_wait(self.redis.hlen(ENTRIES))))


async def _wait(call: Any) -> Any:
    """A redis-py call (typed sync-or-async) as a coroutine, for `cancellable`."""
    return await call


def _entry(entry_id: int, fields: dict[str, Any], due: float) -> Entry:
    return Entry(
        id=entry_id,
        channel=str(fields["channel"]),
        chat_id=str(fields["chat_id"]),
        thread=fields.get("thread"),
        is_group=bool(fields.get("is_group")),
        text=str(fields["text"]),
        cron=fields.get("cron"),
        run_agent=bool(fields.get("run_agent")),
        due=due,
        created=float(fields.get("created", 0.0)),
    )
