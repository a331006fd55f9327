"""Rate budgets per channel: overall, per chat and per group, as nested limiters (aiolimiter
buckets, or `SlidingWindow`s for a `Rate` counted per window).

A call takes one slot at every level that applies. The per-chat level is why one busy chat
cannot eat the budget of the others. A flood wait (429) is handled by the chat's lane alone:
it waits out `retry_after` for that chat, and no other level slows down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from aiolimiter import AsyncLimiter

from picobot.core.channel import Rate, RateBudget

MAX_IDLE_LIMITERS = 512  # per-chat buckets kept before idle ones are dropped (as PTB does)

T = TypeVar("T")


class Limiter(Protocol):
    """One level of a budget; aiolimiter's `AsyncLimiter` is one. ``async with`` holds a slot
    for the length of a call (a bucket takes it on entry, a window also marks the exit)."""

    max_rate: float

    def has_capacity(self, amount: float = 1) -> bool: ...

    async def acquire(self, amount: float = 1) -> None: ...

    async def __aenter__(self) -> None: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SlidingWindow:
    """At most `count` calls in any `period` seconds, counted as the platform sees them.

    A call counts from when it starts until `period` after it ended: it reached the platform
    somewhere in between, so a slot is reused only once the platform's window has certainly
    let go of it. Waiters are served in order. (aiolimiter's leaky bucket lets
    ``burst + rate * t`` calls through in any t seconds: right after a whole window's burst,
    too many for a platform counting per window.)
    """

    def __init__(self, count: int, period: float, clock: Callable[[], float] | None = None) -> None:
        self.max_rate = float(count)
        self._period = period
        self._clock = clock or _loop_time
        self._running = 0  # calls under way
        self._ended: deque[float] = deque()  # when the calls still in the window ended
        self._call_ended = asyncio.Event()
        self._turn = asyncio.Lock()  # FIFO: one waiter at a time, in arrival order

    def _free(self) -> int:
        horizon = self._clock() - self._period
        while self._ended and self._ended[0] <= horizon:
            self._ended.popleft()
        return int(self.max_rate) - self._running - len(self._ended)

    def has_capacity(self, amount: float = 1) -> bool:
        return not self._turn.locked() and self._free() >= amount

    async def __aenter__(self) -> None:
        async with self._turn:
            while self._free() < 1:
                # Room comes when the oldest ended call leaves the window, or a call ends.
                wait = self._ended[0] + self._period - self._clock() if self._ended else None
                self._call_ended.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._call_ended.wait()
            self._running += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self._running -= 1
        self._ended.append(self._clock())
        self._call_ended.set()

    async def acquire(self, amount: float = 1) -> None:
        """Take `amount` slots for calls that end at once."""
        for _ in range(int(amount)):
            async with self:
                pass


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class Budget(Protocol):
    """One channel's rate budget: `RateLimits` in one process, shared by every node in
    cluster mode (`picobot.cluster.budget.SharedRateLimits`)."""

    async def acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> None:
        """Wait until one call to `chat_id` fits every level, and take it."""

    async def try_acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> bool:
        """Take a slot only if every level has one free now."""

    def slot(
        self, chat_id: str, *, group: bool = False, edit: bool = False
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait until one call fits every level; hold it while the call runs."""

    def try_slot(
        self, chat_id: str, *, group: bool = False, edit: bool = False
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """Like `slot`, only if every level has room now: yields whether it got one."""

    def try_spare(self, chat_id: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """A slot of the overall level, only while at least half of it is free: for calls
        that must never delay a reply (typing indicators). Yields whether it got one."""

    async def hold(self, chat_id: str | None, seconds: float) -> None:
        """A 429 said wait `seconds` for `chat_id` (None: every chat)."""


# Makes the budget of the channel named by the first argument.
BudgetFactory = Callable[[str, RateBudget], Budget]


def _limiter(rate: Rate) -> Limiter:
    if rate.window:
        return SlidingWindow(rate.burst, rate.burst / rate.per_second)
    # aiolimiter's period defaults to 60 s; state it so `burst` calls fit in one period.
    return AsyncLimiter(rate.burst, rate.burst / rate.per_second)


class RateLimits:
    """The buckets of one channel. Create inside the running event loop."""

    def __init__(self, budget: RateBudget) -> None:
        self.budget = budget
        self._overall = _limiter(budget.overall) if budget.overall else None
        self._edits_overall = _limiter(budget.edits_overall) if budget.edits_overall else None
        self._chats: dict[tuple[str, str], Limiter] = {}

    def _buckets(self, chat_id: str, *, group: bool, edit: bool) -> Iterator[Limiter]:
        # Narrowest first: waiting on a chat's own bucket must not hold a shared slot.
        per_chat = self.budget.edits_per_chat if edit and self.budget.edits_per_chat else None
        kind, rate = ("edit", per_chat) if per_chat else ("send", self.budget.per_chat)
        if rate:
            yield self._chat_bucket(kind, chat_id, rate)
        if group and self.budget.per_group and not (edit and per_chat):
            yield self._chat_bucket("group", chat_id, self.budget.per_group)
        if edit and self._edits_overall:
            yield self._edits_overall
        if self._overall:
            yield self._overall

    def _chat_bucket(self, kind: str, chat_id: str, rate: Rate) -> Limiter:
        key = (kind, chat_id)
        bucket = self._chats.get(key)
        if bucket is None:
            if len(self._chats) >= MAX_IDLE_LIMITERS:
                self._drop_idle()
            bucket = self._chats[key] = _limiter(rate)
        return bucket

    def _drop_idle(self) -> None:
        idle = [k for k, b in self._chats.items() if b.has_capacity(b.max_rate)]
        for key in idle:
            del self._chats[key]

    async def acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> None:
        """Wait until one call to `chat_id` fits every budget, and take it."""
        for bucket in self._buckets(chat_id, group=group, edit=edit):
            await bucket.acquire()

    def slot(
        self, chat_id: str, *, group: bool = False, edit: bool = False
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait until one call to `chat_id` fits every budget, and hold it while the call runs
        (a level counted per window counts the call until `period` after it ended)."""
        return _Held(list(self._buckets(chat_id, group=group, edit=edit)), None)

    async def try_acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> bool:
        """Take a slot only if every level has one free now (for droppable edits)."""
        buckets = list(self._buckets(chat_id, group=group, edit=edit))
        if not all(b.has_capacity() for b in buckets):
            return False
        for bucket in buckets:
            await bucket.acquire()  # has capacity, so this does not wait
        return True

    def try_slot(
        self, chat_id: str, *, group: bool = False, edit: bool = False
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """Like `slot`, only if every level has room now: yields whether it got one."""
        buckets = list(self._buckets(chat_id, group=group, edit=edit))
        if not all(b.has_capacity() for b in buckets):
            return contextlib.nullcontext(False)
        return _Held(buckets, True)  # each has room, so entering does not wait

    def try_spare(self, chat_id: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """A slot of the overall level while half of it is free (and, for a window, no call
        waits for it); no overall level: always."""
        overall = self._overall
        if overall is None:
            return contextlib.nullcontext(True)
        if not overall.has_capacity(max(1.0, overall.max_rate / 2)):
            return contextlib.nullcontext(False)
        return _Held([overall], True)  # has room, so entering does not wait

    async def hold(self, chat_id: str | None, seconds: float) -> None:
        """Nothing to do in one process: the chat's lane itself waits out the 429."""
        return None

    def __len__(self) -> int:
        return len(self._chats)


class _Held(contextlib.AsyncExitStack, Generic[T]):
    """The buckets, each entered in turn and held until the exit; entering gives `result`.
    (Not an `asynccontextmanager`: every platform call takes a slot, and its generator cost
    about 2 µs.)"""

    def __init__(self, buckets: list[Limiter], result: T) -> None:
        super().__init__()
        self._buckets = buckets
        self._result = result

    async def __aenter__(self) -> T:  # type: ignore[override]
        try:
            for bucket in self._buckets:
                await self.enter_async_context(bucket)
        except BaseException:  # cancelled while waiting: the levels taken see the call end
            await self.aclose()
            raise
        return self._result


def local_budget(channel: str, budget: RateBudget) -> Budget:
    return RateLimits(budget)
