"""Rate budgets, asserted by counts of immediately available slots (no wall-clock timing)."""

from picobot.core.channel import Rate, RateBudget
from picobot.outbound.ratelimit import RateLimits


async def available(limits: RateLimits, chat: str, **kw: bool) -> int:
    count = 0
    while count < 100 and await limits.try_acquire(chat, **kw):
        count += 1
    return count


async def test_per_chat_burst_then_nothing() -> None:
    limits = RateLimits(RateBudget(per_chat=Rate(1.0, burst=3)))
    assert await available(limits, "a") == 3


async def test_one_chat_does_not_spend_another_chats_budget() -> None:
    limits = RateLimits(RateBudget(per_chat=Rate(1.0, burst=2)))
    assert await available(limits, "a") == 2
    assert await available(limits, "b") == 2


async def test_overall_budget_is_shared() -> None:
    limits = RateLimits(RateBudget(overall=Rate(1.0, burst=5), per_chat=Rate(1.0, burst=3)))
    assert await available(limits, "a") == 3
    assert await available(limits, "b") == 2  # only 5 overall


async def test_group_budget_applies_to_groups_only() -> None:
    budget = RateBudget(per_chat=Rate(1.0, burst=10), per_group=Rate.per_minute(20, burst=4))
    limits = RateLimits(budget)
    assert await available(limits, "g", group=True) == 4
    assert await available(limits, "p") == 10


async def test_edits_use_their_own_per_chat_bucket_when_declared() -> None:
    budget = RateBudget(per_chat=Rate(1.0, burst=1), edits_per_chat=Rate(1.0, burst=5))
    limits = RateLimits(budget)
    assert await available(limits, "a") == 1
    assert await available(limits, "a", edit=True) == 5


async def test_edits_overall_budget() -> None:
    limits = RateLimits(RateBudget(edits_overall=Rate.per_minute(50, burst=2)))
    assert await available(limits, "a", edit=True) == 2
    assert await available(limits, "b", edit=True) == 0
    assert await available(limits, "b") == 100  # sends are not limited here


async def test_idle_chat_buckets_are_dropped() -> None:
    limits = RateLimits(RateBudget(per_chat=Rate(1000.0, burst=1)))
    for i in range(600):
        await limits.acquire(str(i))
    assert len(limits) <= 600
    assert await limits.try_acquire("new")
