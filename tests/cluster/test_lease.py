"""Leases with fencing tokens, against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from picobot.cluster import connect
from picobot.cluster.lease import Lease, keep
from tests.cluster.redis_server import RedisServer


async def test_one_holder_at_a_time(redis: Redis) -> None:
    a, b = Lease(redis, "telegram", "a", 5), Lease(redis, "telegram", "b", 5)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert await a.holder() == "a" == await b.holder()
    assert a.held and not b.held


async def test_release_hands_over_with_a_greater_token(redis: Redis) -> None:
    a, b = Lease(redis, "telegram", "a", 5), Lease(redis, "telegram", "b", 5)
    assert await a.try_acquire()
    first = a.token
    await a.release()
    assert not a.held
    assert await b.try_acquire()
    assert b.token is not None and first is not None and b.token > first
    assert await b.holder() == "b"


async def test_renew_fails_once_another_node_holds_it(redis: Redis) -> None:
    a, b = Lease(redis, "telegram", "a", 5), Lease(redis, "telegram", "b", 5)
    assert await a.try_acquire()
    assert await a.renew()
    await redis.delete(a.key)  # as if it expired while `a` was paused
    assert await b.try_acquire()
    assert not await a.renew()
    assert not a.held
    await a.release()  # not held: must not delete b's lease
    assert await b.holder() == "b"


async def test_renew_extends_the_ttl(redis: Redis) -> None:
    a = Lease(redis, "x", "a", 5)
    assert await a.try_acquire()
    await redis.pexpire(a.key, 100)
    assert await a.renew()
    assert await redis.pttl(a.key) > 1000


async def test_a_standby_takes_over_when_the_holder_stops_renewing(redis: Redis) -> None:
    events: dict[str, asyncio.Event] = {n: asyncio.Event() for n in ("a", "b", "a_lost")}

    def setter(name: str):  # type: ignore[no-untyped-def]
        async def set_event() -> None:
            events[name].set()

        return set_event

    a, b = Lease(redis, "telegram", "a", 0.6), Lease(redis, "telegram", "b", 0.6)
    keeper_a = asyncio.create_task(keep(a, acquired=setter("a"), lost=setter("a_lost")))
    await asyncio.wait_for(events["a"].wait(), 5)
    keeper_b = asyncio.create_task(keep(b, acquired=setter("b"), lost=setter("a_lost")))
    try:
        keeper_a.cancel()  # the holder dies: no release, the lease runs out
        with contextlib.suppress(asyncio.CancelledError):
            await keeper_a
        await asyncio.wait_for(events["b"].wait(), 5)
        assert b.token is not None and a.token is not None and b.token > a.token
        assert await b.holder() == "b"
    finally:
        keeper_b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper_b


async def test_keep_reports_a_lost_lease_at_once(redis: Redis) -> None:
    acquired, lost = asyncio.Event(), asyncio.Event()

    async def on_acquired() -> None:
        acquired.set()

    async def on_lost() -> None:
        lost.set()

    a = Lease(redis, "telegram", "a", 0.6)
    task = asyncio.create_task(keep(a, acquired=on_acquired, lost=on_lost, retry=60))
    try:
        await asyncio.wait_for(acquired.wait(), 5)
        await redis.set(a.key, "b 999", px=60_000)  # another node holds it now
        await asyncio.wait_for(lost.wait(), 5)
        assert not a.held
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_redis_down_loses_the_lease_and_it_comes_back(own_redis: RedisServer) -> None:
    client = connect(own_redis.url)
    acquired, lost = asyncio.Event(), asyncio.Event()
    count = 0

    async def on_acquired() -> None:
        nonlocal count
        count += 1
        acquired.set()

    async def on_lost() -> None:
        lost.set()

    a = Lease(client, "telegram", "a", 0.6)
    task = asyncio.create_task(keep(a, acquired=on_acquired, lost=on_lost))
    try:
        await asyncio.wait_for(acquired.wait(), 5)
        acquired.clear()
        own_redis.stop()
        await asyncio.wait_for(lost.wait(), 10)
        assert not a.held
        own_redis.start()  # empty again (no persistence): the lease is free
        await asyncio.wait_for(acquired.wait(), 15)
        assert count == 2 and a.held
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
