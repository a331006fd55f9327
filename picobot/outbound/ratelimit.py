"""Rate budgets per channel: overall, per chat and per group, as nested aiolimiter buckets.

A call takes one slot at every level that applies. The per-chat level is why one busy chat
cannot eat the budget of the others; a flood wait (429) is handled by the chat's lane alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiolimiter import AsyncLimiter

from picobot.core.channel import Rate, RateBudget

MAX_IDLE_LIMITERS = 512  # per-chat buckets kept before idle ones are dropped (as PTB does)


def _limiter(rate: Rate) -> AsyncLimiter:
    # aiolimiter's period defaults to 60 s; state it so `burst` calls fit in one period.
    return AsyncLimiter(rate.burst, rate.burst / rate.per_second)


class RateLimits:
    """The buckets of one channel. Create inside the running event loop."""

    def __init__(self, budget: RateBudget) -> None:
        self.budget = budget
        self._overall = _limiter(budget.overall) if budget.overall else None
        self._edits_overall = _limiter(budget.edits_overall) if budget.edits_overall else None
        self._chats: dict[tuple[str, str], AsyncLimiter] = {}

    def _buckets(self, chat_id: str, *, group: bool, edit: bool) -> Iterator[AsyncLimiter]:
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

    def _chat_bucket(self, kind: str, chat_id: str, rate: Rate) -> AsyncLimiter:
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

    async def try_acquire(self, chat_id: str, *, group: bool = False, edit: bool = False) -> bool:
        """Take a slot only if every level has one free now (for droppable edits)."""
        buckets = list(self._buckets(chat_id, group=group, edit=edit))
        if not all(b.has_capacity() for b in buckets):
            return False
        for bucket in buckets:
            await bucket.acquire()  # has capacity, so this does not wait
        return True

    def __len__(self) -> int:
        return len(self._chats)
