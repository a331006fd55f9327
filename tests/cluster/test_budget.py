"""Shared rate budgets (GCRA in Lua) and flood holds, across two clients of one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from picobot.cluster import connect
from picobot.cluster.budget import SharedRateLimits, as_bucket, levels
from picobot.core.channel import Rate, RateBudget
from picobot.core.errors import RateLimited
from picobot.outbound.calls import rate_limited

BUDGET = RateBudget(
    overall=Rate(30, burst=30), per_chat=Rate(1, burst=3), per_group=Rate.per_minute(20, burst=2)
)


@pytest.fixture
async def other(redis: Redis) -> AsyncIterator[Redis]:
    """A second client: another node."""
    pool_kwargs = redis.connection_pool.connection_kwargs
    client = connect(f"redis://{pool_kwargs['host']}:{pool_kwargs['port']}/0")
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_chat_budget_is_shared_by_the_nodes(redis: Redis, other: Redis) -> None:
    a, b = SharedRateLimits(redis, "telegram", BUDGET), SharedRateLimits(other, "telegram", BUDGET)
    assert await a.try_acquire("1")
    assert await b.try_acquire("1")
    assert await a.try_acquire("1")  # the burst of 3 is spent, by two nodes together
    assert not await b.try_acquire("1")
    assert not await a.try_acquire("1")
    assert await b.try_acquire("2")  # other chats have their own budget
    assert 0 < await a.wait_time("1") <= 1.0


async def test_wait_time_takes_nothing(redis: Redis) -> None:
    limits = SharedRateLimits(redis, "telegram", RateBudget(per_chat=Rate(1, burst=1)))
    for _ in range(3):
        assert await limits.wait_time("1") == 0
    assert await limits.try_acquire("1")
    assert await limits.wait_time("1") > 0


async def test_the_overall_level_binds_every_chat(redis: Redis, other: Redis) -> None:
    budget = RateBudget(overall=Rate(1, burst=2), per_chat=Rate(1, burst=5))
    a, b = SharedRateLimits(redis, "slack", budget), SharedRateLimits(other, "slack", budget)
    assert await a.try_acquire("1")
    assert await b.try_acquire("2")
    assert not await a.try_acquire("3")


async def test_group_chats_take_the_group_level_too(redis: Redis) -> None:
    limits = SharedRateLimits(redis, "telegram", BUDGET)
    assert await limits.try_acquire("-5", group=True)
    assert await limits.try_acquire("-5", group=True)
    assert not await limits.try_acquire("-5", group=True)  # 2 per group, though 3 per chat
    assert await limits.try_acquire("7")


async def test_a_refused_call_takes_no_level(redis: Redis) -> None:
    budget = RateBudget(overall=Rate(1, burst=2), per_chat=Rate(1, burst=1))
    limits = SharedRateLimits(redis, "x", budget)
    assert await limits.try_acquire("1")
    assert not await limits.try_acquire("1")  # the chat refuses: the overall slot stays free
    assert await limits.try_acquire("2")


async def test_levels_follow_the_budget() -> None:
    budget = RateBudget(
        overall=Rate(30), per_chat=Rate(1), edits_overall=Rate(1), edits_per_chat=Rate(2)
    )
    kinds = [lv.key.split(":")[3] for lv in levels("d", budget, "9", group=False, edit=True)]
    assert kinds == ["edit", "edits", "overall"]
    kinds = [lv.key.split(":")[3] for lv in levels("d", budget, "9", group=True, edit=False)]
    assert kinds == ["send", "overall"]


async def test_concurrent_takers_never_exceed_the_burst(redis: Redis, other: Redis) -> None:
    budget = RateBudget(per_chat=Rate(0.1, burst=5))
    nodes = [SharedRateLimits(c, "telegram", budget) for c in (redis, other)]
    results = await asyncio.gather(*(nodes[i % 2].try_acquire("1") for i in range(40)))
    assert sum(results) == 5


async def test_acquire_waits_for_the_next_slot(redis: Redis) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    limits = SharedRateLimits(redis, "telegram", RateBudget(per_chat=Rate(20)), sleep=sleep)
    await limits.acquire("1")
    assert waits == []
    await limits.acquire("1")
    assert waits and all(0 < w <= 0.05 for w in waits)


async def test_a_chat_hold_pauses_every_node_for_that_chat(redis: Redis, other: Redis) -> None:
    a, b = SharedRateLimits(redis, "telegram", BUDGET), SharedRateLimits(other, "telegram", BUDGET)
    await a.hold("1", 5)
    assert not await b.try_acquire("1")
    assert 4 < await b.wait_time("1") <= 5
    assert await b.try_acquire("2")
    assert 4 < await b.held_for("1") <= 5


async def test_an_overall_hold_pauses_every_chat(redis: Redis, other: Redis) -> None:
    a, b = SharedRateLimits(redis, "telegram", BUDGET), SharedRateLimits(other, "telegram", BUDGET)
    await a.hold(None, 3)
    assert not await b.try_acquire("1")
    assert not await b.try_acquire("2")
    assert await SharedRateLimits(other, "discord", BUDGET).try_acquire("1")


async def test_a_shorter_hold_keeps_the_longer_one(redis: Redis) -> None:
    limits = SharedRateLimits(redis, "telegram", BUDGET)
    await limits.hold("1", 10)
    await limits.hold("1", 1)
    assert await limits.held_for("1") > 5
    await limits.hold("1", 20)
    assert await limits.held_for("1") > 15


async def test_a_429_holds_the_chat_or_the_whole_bot_on_every_node(
    redis: Redis, other: Redis
) -> None:
    a, b = SharedRateLimits(redis, "telegram", BUDGET), SharedRateLimits(other, "telegram", BUDGET)

    async def flooded() -> str:
        raise RateLimited(5)

    with pytest.raises(RateLimited):
        await rate_limited(a, "7", flooded)()
    assert 4 < await b.held_for("7") <= 5 and await b.held_for(None) == 0
    assert not await b.try_acquire("7") and await b.try_acquire("8")

    async def global_flood() -> str:
        raise RateLimited(3, overall=True)

    with pytest.raises(RateLimited):
        await rate_limited(a, "8", global_flood)()
    assert not await b.try_acquire("9")  # every chat waits


@pytest.mark.parametrize("count, seconds", [(30, 1.0), (20, 60.0), (2, 1.0)])
def test_a_window_rate_becomes_a_bucket_that_never_exceeds_it(count: int, seconds: float) -> None:
    bucket = as_bucket(Rate.per_window(count, seconds))
    assert not bucket.window
    # A bucket lets `burst + rate * W` calls through in any W seconds: never more than allowed.
    assert bucket.burst + bucket.per_second * seconds <= count
    assert as_bucket(Rate(1.0, burst=2)) == Rate(1.0, burst=2)  # plain buckets unchanged


async def test_spare_is_taken_only_while_half_the_overall_burst_is_free(
    redis: Redis, other: Redis
) -> None:
    budget = RateBudget(overall=Rate(1, burst=4), per_chat=Rate(1, burst=1))
    a, b = SharedRateLimits(redis, "x", budget), SharedRateLimits(other, "x", budget)
    assert await a.try_acquire("1")
    async with b.try_spare("1") as spare:  # 3 of 4 free; chat 1's own slot is spent
        assert spare
    async with a.try_spare("2") as spare:  # 2 of 4 free: not more than half
        assert not spare
    assert await b.try_acquire("2") and await a.try_acquire("3")  # replies get the rest
    assert not await b.try_acquire("4")


async def test_spare_waits_out_no_hold(redis: Redis) -> None:
    limits = SharedRateLimits(redis, "x", RateBudget(overall=Rate(1, burst=4)))
    await limits.hold("1", 30)
    async with limits.try_spare("1") as spare:
        assert not spare
    async with limits.try_spare("2") as spare:
        assert spare
