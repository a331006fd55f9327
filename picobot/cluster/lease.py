"""A named lease in Redis with a fencing token: one holder at a time, cluster-wide.

    try_acquire ─► SET NX PX + INCR token (one Lua script)
    renew       ─► PEXPIRE only while the value is still "<node> <token>"
    release     ─► DEL under the same check

`keep()` runs a lease's life: take it when free, renew it every ``ttl / 3``, and report the
moment a renewal fails (lost or Redis unreachable) so the holder stops acting at once. A
holder's writes to Redis carry `Lease.fence`, checked by scripts against the token counter, so
a holder paused past its lease cannot write after another node took over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError

from picobot.cluster import cancellable, key
from picobot.core.tasks import to_the_end

log = logging.getLogger("picobot.cluster")

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Lua prologue for fenced writes: KEYS[1] is the fence counter, ARGV[1] the holder's token.
FENCE_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
"""


class Fence(NamedTuple):
    """What a fenced write carries: the counter's key and the token it must still equal."""

    key: str
    token: int


class Lease:
    """The lease `name`, as seen by `node`. Not held until `try_acquire()` says so."""

    def __init__(self, redis: Redis, name: str, node: str, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.redis = redis
        self.name = name
        self.node = node
        self.ttl = ttl
        self.key = key("lease", name)
        self.fence_key = key("fence", name)
        self.token: int | None = None
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return self.token is not None

    @property
    def fence(self) -> Fence | None:
        return Fence(self.fence_key, self.token) if self.token is not None else None

    @property
    def _value(self) -> str:
        return f"{self.node} {self.token}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    async def try_acquire(self) -> bool:
        """Take the lease if it is free; True if this node holds it now.

        :raises redis.exceptions.RedisError: if Redis cannot be reached.
        """
        if self.token is not None:
            return True
        token = await self._acquire(keys=[self.key, self.fence_key], args=[self.node, self._ttl_ms])
        if token is None:
            return False
        self.token = int(token)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer held) if another node holds it now.

        :raises redis.exceptions.RedisError: if Redis cannot be reached (the caller must stop
            acting as the holder: the lease may run out before Redis answers again).
        """
        if self.token is None:
            return False
        renewed = await self._renew(keys=[self.key], args=[self._value, self._ttl_ms])
        if not renewed:
            self.token = None
        return bool(renewed)

    async def release(self) -> None:
        """Give the lease up (if still held), so another node can take it without waiting."""
        if self.token is None:
            return
        value, self.token = self._value, None
        try:
            await self._release(keys=[self.key], args=[value])
        except RedisError as exc:  # it expires by itself
            log.warning(
                "lease %s: release failed (%s); it expires in %.1f s", self.name, exc, self.ttl
            )

    def forget(self) -> None:
        """Stop considering the lease held, without telling Redis (renewal failed)."""
        self.token = None

    async def holder(self) -> str | None:
        """The node holding the lease now, or None."""
        value = await self.redis.get(self.key)
        return value.split(" ", 1)[0] if isinstance(value, str) else None


async def keep(
    lease: Lease,
    *,
    acquired: Callable[[], Awaitable[None]],
    lost: Callable[[], Awaitable[None]],
    retry: float | None = None,
    eligible: Callable[[], bool] = lambda: True,
) -> None:
    """Hold `lease` whenever possible, until cancelled.

    Tries to take it every `retry` s (default ``ttl / 6``) while `eligible()` (a node that
    could not use the lease leaves it to the others); once taken, awaits `acquired()` and
    renews every ``ttl / 3``. When a renewal fails (another holder, Redis unreachable or too
    slow) the lease is dropped and `lost()` awaited at once, then it is tried again.
    `acquired()` may release the lease (it could not use it): it is tried again later.
    Cancelling does not release: call `lease.release()` once the holder's work has stopped.
    `acquired` and `lost` must not raise; a cancel waits for them to finish (a connection
    half opened or half closed would be left behind).
    """
    retry = lease.ttl / 6 if retry is None else retry
    renew_every = lease.ttl / 3
    while True:
        taken = False
        if eligible():
            try:
                taken = await cancellable(lease.try_acquire())
            except RedisError as exc:
                log.debug("lease %s: cannot reach Redis (%s)", lease.name, exc)
        if not taken:
            await asyncio.sleep(retry)
            continue
        log.info("lease %s: held by this node (token %s)", lease.name, lease.token)
        await to_the_end(acquired())
        if not lease.held:  # acquired() gave it back: it could not use it
            await asyncio.sleep(retry)
            continue
        while True:
            await asyncio.sleep(renew_every)
            given_up = not lease.held  # released meanwhile (its intake failed)
            try:
                async with asyncio.timeout(renew_every):
                    if await cancellable(lease.renew()):
                        continue
                reason = "given up" if given_up else "taken by another node"
            except (RedisError, TimeoutError) as exc:
                reason = f"cannot renew: {exc or type(exc).__name__}"
            lease.forget()
            log.warning("lease %s: lost (%s)", lease.name, reason)
            await to_the_end(lost())
            break
