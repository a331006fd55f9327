"""Rate budgets shared by every node: GCRA in one Lua script, plus flood holds.

A call takes one slot at every level that applies (overall, per chat, per group, edits) in one
atomic script, or none and learns how long to wait. Time comes from Redis (`TIME`), so the
nodes' clocks do not matter. A 429's ``retry_after`` becomes a hold key with that expiry: while
it exists, the script answers "wait" to every node sending to that chat (or, for an overall
flood, to any chat of that channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from redis.asyncio import Redis

from picobot.cluster import key
from picobot.core.channel import Rate, RateBudget

# KEYS: n level keys, then hold keys. ARGV: n, take (0/1), then interval_ms and burst per level.
# Returns 0 (taken, or would be taken) or the milliseconds to wait before asking again.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local wait = 0
for i = n + 1, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl > wait then wait = ttl end
end
if wait > 0 then return wait end
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local allow_at = tat + interval - interval * burst
  if allow_at - now > wait then wait = allow_at - now end
  tats[i] = tat + interval
end
if wait > 0 then return math.ceil(wait) end
if ARGV[2] == '1' then
  for i = 1, n do
    redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', math.ceil(tats[i] - now) + 1)
  end
end
return 0
"""

_HOLD = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[1], 'GT')
return redis.call('PTTL', KEYS[1])
"""


class Level(NamedTuple):
    key: str
    rate: Rate


def as_bucket(rate: Rate) -> Rate:
    """The leaky bucket (GCRA) that never exceeds `rate`: a rate counted per window (at most
    N calls in any window W) becomes a burst of N/2 plus N/2 per W, since a bucket lets
    ``burst + rate * W`` calls through in any W seconds."""
    if not rate.window:
        return rate
    half = max(1, rate.burst // 2)
    window = rate.burst / rate.per_second
    return Rate(half / window, half)


def levels(
    channel: str, budget: RateBudget, chat_id: str, *, group: bool, edit: bool
) -> list[Level]:
    """The budget levels one call to `chat_id` takes a slot at (as `picobot.ratelimit` picks)."""
    found = []
    per_chat = budget.edits_per_chat if edit and budget.edits_per_chat else None
    kind, rate = ("edit", per_chat) if per_chat else ("send", budget.per_chat)
    if rate:
        found.append(Level(key("rate", channel, kind, chat_id), as_bucket(rate)))
    if group and budget.per_group and not (edit and per_chat):
        found.append(Level(key("rate", channel, "group", chat_id), as_bucket(budget.per_group)))
    if edit and budget.edits_overall:
        found.append(Level(key("rate", channel, "edits"), as_bucket(budget.edits_overall)))
    if budget.overall:
        found.append(Level(key("rate", channel, "overall"), as_bucket(budget.overall)))
    return found


def hold_key(channel: str, chat_id: str | None) -> str:
    """The hold of one chat, or of the whole channel (`chat_id` None)."""
    return key("hold", channel, chat_id if chat_id is not None else "*")


class SharedRateLimits:
    """One channel's budgets, enforced across the cluster (same calls as `RateLimits`)."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        budget: RateBudget,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.budget = budget
        self._sleep = sleep
        self._gcra = redis.register_script(_GCRA)
        self._hold = redis.register_script(_HOLD)

    async def _ask(self, chat_id: str, *, group: bool, edit: bool, take: bool) -> float:
        found = levels(self.channel, self.budget, chat_id, group=group, edit=edit)
        return await self._take(found, chat_id, take=take)

    async def _take(self, found: list[Level], chat_id: str, *, take: bool) -> float:
        keys = [lv.key for lv in found] + [
            hold_key(self.channel, chat_id),
            hold_key(self.channel, None),
        ]
        args: list[str | int | float] = [len(found), 1 if take else 0]
        for lv in found:
            args += [1000.0 / lv.rate.per_second, lv.rate.burst]
        wait = await self._gcra(keys=keys, args=args)
        return int(wait) / 1000.0

    async def wait_time(self, chat_id: str, *, group: bool = False, edit: bool = False) -> float:
        """Seconds until a call to `chat_id` would fit (0: now), without taking a slot."""
        return await self._ask(chat_id, group=group, edit=edit, take=False)

    async def acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> None:
        """Wait until one call to `chat_id` fits every level and no hold applies; take it.

        :raises redis.exceptions.RedisError: if Redis cannot be reached.
        """
        while (wait := await self._ask(chat_id, group=group, edit=edit, take=True)) > 0:
            await self._sleep(wait)

    async def try_acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> bool:
        """Take a slot only if every level has one free now (for droppable edits)."""
        return await self._ask(chat_id, group=group, edit=edit, take=True) == 0

    @contextlib.asynccontextmanager
    async def slot(
        self, chat_id: str, *, group: bool = False, edit: bool = False
    ) -> AsyncIterator[None]:
        """`acquire`, then the call (a shared bucket's token is spent when taken)."""
        await self.acquire(chat_id, group=group, edit=edit)
        yield

    @contextlib.asynccontextmanager
    async def try_slot(
        self, chat_id: str, *, group: bool = False, edit: bool = False
    ) -> AsyncIterator[bool]:
        yield await self.try_acquire(chat_id, group=group, edit=edit)

    @contextlib.asynccontextmanager
    async def try_spare(self, chat_id: str) -> AsyncIterator[bool]:
        """A slot of the overall level while half of its burst is free, and no hold applies."""
        found = []
        if self.budget.overall:
            bucket = as_bucket(self.budget.overall)
            spare = Rate(bucket.per_second, max(1, bucket.burst // 2))
            found.append(Level(key("rate", self.channel, "overall"), spare))
        yield await self._take(found, chat_id, take=True) == 0

    async def hold(self, chat_id: str | None, seconds: float) -> None:
        """Pause every node's sends to `chat_id` (None: the whole channel) for `seconds`.

        An existing longer hold is kept.
        """
        await self._hold(keys=[hold_key(self.channel, chat_id)], args=[math.ceil(seconds * 1000)])

    async def held_for(self, chat_id: str | None) -> float:
        """Seconds the hold on `chat_id` (None: the channel) still lasts; 0 if none."""
        ttl = int(await self.redis.pttl(hold_key(self.channel, chat_id)))
        return max(0, ttl) / 1000.0
