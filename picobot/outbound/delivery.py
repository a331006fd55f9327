"""Delivering one job from a lane: routed by kind to placeholders, live updates or replies.

    Job ─► ACCEPTED: typing + "Thinking…"   DONE: typing off, unused placeholder removed
        ─► DRAFT / droppable edit: live.py (one try, only if the budget allows now)
        ─► REPLY: reply.py (chunks, placeholder edit, outbox progress, retries, dead letters)

Every platform call goes through `Calls`: rate budget, then retries by error class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from picobot.core.channel import Channel
from picobot.core.eventlines import EVENT_LINES
from picobot.core.messages import Kind, OutboundMessage
from picobot.core.retry import RetryPolicy
from picobot.media.store import MediaStore
from picobot.outbound.calls import rate_limited, retried
from picobot.outbound.lanes import SPILL_AFTER, Job
from picobot.outbound.live import LiveUpdates
from picobot.outbound.placeholders import PlaceholderCalls, Placeholders
from picobot.outbound.ratelimit import Budget, BudgetFactory, local_budget
from picobot.outbound.reply import Replies
from picobot.storage.records import OutboxStore

log = logging.getLogger("picobot.dispatch")

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    typing_ttl: float = 300.0
    placeholder_ttl: float = 600.0
    spill_after: int = SPILL_AFTER  # jobs a lane holds in memory; more wait in the outbox
    budgets: BudgetFactory = local_budget  # cluster mode: budgets shared through Redis


class Calls:
    """Platform calls with the channel's rate budget and the retry policy applied."""

    def __init__(self, retry: RetryPolicy, budgets: BudgetFactory = local_budget) -> None:
        self.retry = retry
        self._budgets = budgets
        self._limits: dict[str, Budget] = {}  # per channel, made on first use

    def limits(self, channel: Channel) -> Budget:
        # Lazily: a channel restarted by a reload keeps its name and its budget.
        limits = self._limits.get(channel.name)
        if limits is None:
            limits = self._budgets(channel.name, channel.capabilities.rate)
            self._limits[channel.name] = limits
        return limits

    async def __call__(
        self,
        channel: Channel,
        msg: OutboundMessage,
        call: Callable[[], Awaitable[T]],
        *,
        edit: bool = False,
    ) -> T:
        limited = rate_limited(
            self.limits(channel), msg.chat_id, call, group=msg.is_group, edit=edit
        )
        return await retried(self.retry, f"{channel.name}:{msg.chat_id}", limited)()


class Delivery:
    """Delivers one job at a time for a lane (the lanes call it)."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        settings: DispatchSettings,
        placeholders: Placeholders,
        outbox: OutboxStore | None,
        media: MediaStore | None = None,
    ) -> None:
        self.channels = channels
        calls = Calls(settings.retry, settings.budgets)
        self.placeholders = PlaceholderCalls(placeholders, calls, outbox)
        self.live = LiveUpdates(calls)
        self.replies = Replies(calls, self.placeholders, outbox, settings.retry, media)

    @property
    def migrated(self) -> Mapping[tuple[str, str], str]:
        """Telegram groups that became supergroups: (channel, old chat id) -> new chat id."""
        return self.replies.migrated

    async def __call__(self, job: Job) -> list[str]:
        """Deliver `job`; the platform message ids.

        :raises ChannelError: when it failed for good (logged, placeholder replaced by a note).
        """
        channel = self.channels[job.msg.channel]
        msg = job.msg
        if msg.kind is Kind.ACCEPTED:
            await self.placeholders.accept(channel, msg)
            return []
        if msg.kind is Kind.DONE:
            await self.placeholders.finish(channel, msg)
            return []
        if msg.kind is Kind.DRAFT:
            return await self.live.draft(channel, msg)
        if msg.droppable:
            return await self.live.update(channel, msg)
        started = time.monotonic()
        ids = await self.replies.deliver(channel, job)
        if ids and EVENT_LINES.take(log):  # one line per reply, not per streaming edit
            n, ms = len(ids), (time.monotonic() - started) * 1000
            log.info(
                "delivered %s:%s (%d chunk%s, %.0f ms)",
                *(msg.channel, msg.chat_id, n, "" if n == 1 else "s", ms),
            )
        return ids
