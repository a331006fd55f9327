"""Rate budgets, asserted by counts of immediately available slots (no wall-clock timing)."""

import asyncio

import pytest

from channels.telegram_channel import CAPABILITIES as TELEGRAM
from picobot.core.channel import Rate, RateBudget
from picobot.outbound.ratelimit import RateLimits, SlidingWindow, _Held


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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_window_allows_a_whole_window_at_once_then_nothing() -> None:
    clock = Clock()
    window = SlidingWindow(30, 1.0, clock)
    for _ in range(30):
        assert window.has_capacity()
        await window.acquire()
    assert not window.has_capacity()
    clock.now += 0.99
    assert not window.has_capacity()  # a leaky bucket would have refilled 29 by now
    clock.now += 0.02
    assert window.has_capacity(30)


async def test_window_counts_a_call_until_a_period_after_it_ended() -> None:
    """The platform saw the call somewhere between its start and its end."""
    clock = Clock()
    window = SlidingWindow(1, 1.0, clock)
    async with window:
        assert not window.has_capacity()
        clock.now += 0.5  # a slow call
    clock.now += 0.9  # 1.4 s after the start, 0.9 s after the end
    assert not window.has_capacity()
    clock.now += 0.2
    assert window.has_capacity()


async def test_telegram_overall_budget_takes_a_burst_to_30_chats_at_once() -> None:
    """Telegram counts ~30 sends per second overall; the budget was a bucket of 4 at 25/s."""
    limits = RateLimits(TELEGRAM.rate)
    at_once = [await limits.try_acquire(str(chat)) for chat in range(31)]
    assert at_once == [True] * 30 + [False]
    assert await available(limits, "0") == 0  # per chat, burst 2: one spent, overall none left


async def test_slot_holds_every_level_during_the_call() -> None:
    limits = RateLimits(RateBudget(overall=Rate.per_window(2, 1.0), per_chat=Rate(1.0, 5)))
    async with limits.slot("a"), limits.slot("b"):
        assert not await limits.try_acquire("c")  # both overall slots are held


async def test_try_slot_holds_only_when_every_level_has_room() -> None:
    limits = RateLimits(RateBudget(overall=Rate.per_window(1, 1.0)))
    async with limits.try_slot("a") as first:
        assert first
        async with limits.try_slot("b") as second:
            assert not second  # the window's one slot is held by the running call


async def test_spare_takes_the_overall_level_only_while_half_of_it_is_free() -> None:
    limits = RateLimits(RateBudget(overall=Rate.per_window(4, 60.0), per_chat=Rate(1.0, 1)))
    assert await limits.try_acquire("a") and await limits.try_acquire("b")
    async with limits.try_spare("a") as spare:  # 2 of 4 free; chat "a"'s own slot is spent
        assert spare
    async with limits.try_spare("c") as spare:  # the indicator took one: 1 of 4 free
        assert not spare
    assert await limits.try_acquire("c")  # a reply still gets the last slot


async def test_spare_is_always_there_without_an_overall_level() -> None:
    limits = RateLimits(RateBudget(per_chat=Rate(1.0, 1)))
    assert await limits.try_acquire("a")
    async with limits.try_spare("a") as spare:
        assert spare


class Level:
    """A level that lets a call in once `open` is set; notes what it saw."""

    max_rate = 1.0

    def __init__(self, name: str, seen: list[str], open_: bool) -> None:
        self.name, self.seen = name, seen
        self.open, self.waiting = asyncio.Event(), asyncio.Event()
        if open_:
            self.open.set()

    def has_capacity(self, amount: float = 1) -> bool:
        return self.open.is_set()

    async def acquire(self, amount: float = 1) -> None:
        await self.open.wait()

    async def __aenter__(self) -> None:
        self.seen.append(f"waits {self.name}")
        self.waiting.set()
        await self.open.wait()
        self.seen.append(f"took {self.name}")

    async def __aexit__(self, *exc: object) -> None:
        self.seen.append(f"ended {self.name}")


async def test_a_slot_cut_while_waiting_ends_the_call_on_the_levels_it_took() -> None:
    seen: list[str] = []
    chat, overall = Level("chat", seen, open_=True), Level("overall", seen, open_=False)
    held = _Held([chat, overall], None)

    async def call() -> None:
        async with held:
            seen.append("called")

    task = asyncio.create_task(call())
    await asyncio.wait_for(overall.waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Windows count a call until a period after it ended: the chat's level must see it end.
    assert seen == ["waits chat", "took chat", "waits overall", "ended chat"]
