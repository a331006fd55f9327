"""Delivering one outbound message: chunks, rate budget, retries by error class, placeholders,
and the durable outbox. The dispatcher's lanes call a `Delivery` for each message, in order.

    Delivery(msg) ─► render_chunks ─► [edit placeholder | send] per chunk ─► outbox progress
                     each call: rate budget (aiolimiter) ─► RetryPolicy (tenacity) ─► channel
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from picobot.core import metrics
from picobot.core.channel import Channel
from picobot.core.errors import (
    ChannelError,
    ChatMigrated,
    FormattingRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from picobot.core.messages import Kind, OutboundMessage
from picobot.core.retry import RetryPolicy
from picobot.outbound.placeholders import Placeholders
from picobot.outbound.ratelimit import RateLimits
from picobot.storage.outbox import Outbox
from picobot.text.chunks import Chunk, plain_again, render_chunks
from picobot.text.render import Rendered, render

T = TypeVar("T")
log = logging.getLogger("picobot.dispatch")

DELIVERY_FAILED_NOTE = "⚠️ Sorry, the reply could not be delivered."
LANE_IDLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    typing_ttl: float = 300.0
    placeholder_ttl: float = 600.0
    lane_idle: float = LANE_IDLE_SECONDS


class Delivery:
    """Delivers one message at a time for a lane. Shared state: rate budgets per channel,
    chat migrations, and the progress of replies resumed from the outbox."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        settings: DispatchSettings,
        placeholders: Placeholders,
        outbox: Outbox | None,
    ) -> None:
        self.channels = channels
        self.settings = settings
        self.placeholders = placeholders
        self.outbox = outbox
        self.migrated: dict[tuple[str, str], str] = {}  # Telegram group -> supergroup ids
        self.progress: dict[str, dict[int, str]] = {}  # resumed message id -> sent chunks
        self.recorded: set[str] = set()  # ids already in the outbox, queued on a lane
        self._limits: dict[str, RateLimits] = {}  # per channel, made on first use

    async def __call__(self, msg: OutboundMessage) -> list[str]:
        """Deliver `msg`; the platform message ids.

        :raises ChannelError: when it failed for good (logged, placeholder replaced by a note).
        """
        return await self._deliver(msg)

    def _limits_of(self, channel: Channel) -> RateLimits:
        # Lazily: channels may be added after the dispatcher exists (the daemon does so).
        limits = self._limits.get(channel.name)
        if limits is None:
            limits = self._limits[channel.name] = RateLimits(channel.capabilities.rate)
        return limits

    async def _deliver(self, msg: OutboundMessage) -> list[str]:
        channel = self.channels[msg.channel]
        if msg.kind is Kind.ACCEPTED:
            await self._accept(channel, msg)
            return []
        if msg.kind is Kind.DONE:
            await self._finish(channel, msg)
            return []
        if msg.kind is Kind.DRAFT:
            return await self._draft(channel, msg)
        durable = self.outbox is not None and msg.durable
        progress = self.progress.pop(msg.id, {})  # chunks a previous run already delivered
        if durable and msg.id not in self.recorded:
            await self.outbox.add(msg)  # type: ignore[union-attr]  # submitted without record()
        self.recorded.discard(msg.id)
        while True:
            try:
                ids = await self._reply_migrating(channel, msg, progress, durable)
                break
            except TransientError as exc:
                if not durable:
                    await self._failed(channel, msg, exc)
                    raise
                # Platform down: the reply stays in the outbox and this chat waits, in order.
                log.warning(
                    "%s:%s unreachable (%s); retrying in %.0f s",
                    msg.channel,
                    msg.chat_id,
                    exc,
                    self.settings.retry.max_backoff,
                )
                await self.settings.retry.sleep(self.settings.retry.max_backoff)
            except ChannelError as exc:
                await self._failed(channel, msg, exc)
                if durable:
                    await self.outbox.dead(msg.id, f"{type(exc).__name__}: {exc}")  # type: ignore[union-attr]
                raise
        if durable:
            await self.outbox.delivered(msg)  # type: ignore[union-attr]
        metrics.OUTBOUND.labels(msg.channel, "sent").inc(len(ids))
        return ids

    async def _reply_migrating(
        self, channel: Channel, msg: OutboundMessage, progress: dict[int, str], durable: bool
    ) -> list[str]:
        try:
            return await self._reply(channel, msg, progress, durable)
        except ChatMigrated as exc:
            log.info("%s:%s migrated to %s", msg.channel, msg.chat_id, exc.new_chat_id)
            self.migrated[msg.lane_key] = exc.new_chat_id
            return await self._reply(
                channel, replace(msg, chat_id=exc.new_chat_id), progress, durable
            )

    async def _failed(self, channel: Channel, msg: OutboundMessage, exc: ChannelError) -> None:
        log.warning("giving up on a reply to %s:%s: %s", msg.channel, msg.chat_id, exc)
        metrics.OUTBOUND.labels(msg.channel, "failed").inc()
        await self._replace_placeholder(channel, msg, DELIVERY_FAILED_NOTE)

    async def _accept(self, channel: Channel, msg: OutboundMessage) -> None:
        if msg.in_reply_to is None:
            return
        entry = self.placeholders.open(msg.in_reply_to, channel, msg.chat_id, msg.thread)
        if entry.message_id is not None or not (msg.text and channel.capabilities.can_edit):
            return  # restored after a restart; or one we could not edit into the reply
        try:
            entry.message_id = await self._call(
                channel,
                msg,
                lambda: channel.send(
                    msg.chat_id, render(msg.text, "plain"), reply_to=msg.reply_to, thread=msg.thread
                ),
            )
        except ChannelError as exc:
            log.info("no placeholder in %s:%s: %s", msg.channel, msg.chat_id, exc)
            return
        if self.outbox is not None:  # so a restart can edit or remove it
            await self.outbox.placeholder(msg.in_reply_to, entry.message_id)

    async def _finish(self, channel: Channel, msg: OutboundMessage) -> None:
        entry = self.placeholders.close(msg.in_reply_to)
        if entry is not None and entry.message_id is not None:
            await self._remove(channel, msg, entry.message_id)

    async def _reply(
        self,
        channel: Channel,
        msg: OutboundMessage,
        progress: dict[int, str] | None = None,
        durable: bool = False,
    ) -> list[str]:
        caps = channel.capabilities
        chunks = render_chunks(msg.text, caps, plain=msg.plain)
        if not chunks:
            return []
        if msg.droppable:
            return await self._drop_or_deliver(channel, msg, chunks[0])
        progress = {} if progress is None else progress
        placeholder = (
            None if msg.edit_of or not caps.can_edit else self.placeholders.take(msg.in_reply_to)
        )
        target = msg.edit_of or placeholder
        ids: list[str] = []
        try:
            for index, chunk in enumerate(chunks):
                if index in progress:  # delivered before a restart or a retry
                    ids.append(progress[index])
                    continue
                sent = None
                if index == 0 and target is not None:
                    try:
                        await self._edit(channel, msg, target, chunk)
                        sent = target
                    except PermanentError as exc:
                        if msg.edit_of is not None:
                            raise
                        # The placeholder is not editable (deleted by a user?): send anew.
                        log.info(
                            "placeholder not editable in %s:%s: %s", msg.channel, msg.chat_id, exc
                        )
                if sent is None:
                    sent = await self._send(channel, msg, chunk, first=index == 0)
                ids.append(progress.setdefault(index, sent))
                if durable:
                    await self.outbox.chunk_sent(msg.id, index, sent)  # type: ignore[union-attr]
        except ChannelError as exc:
            if placeholder is not None and placeholder not in ids:
                if durable and isinstance(exc, TransientError):
                    self.placeholders.put_back(msg.in_reply_to, placeholder)  # retried later
                else:
                    await self._note_or_remove(channel, msg, placeholder, DELIVERY_FAILED_NOTE)
            raise
        if placeholder is not None and placeholder not in ids:
            await self._remove(channel, msg, placeholder)  # never leave "Thinking…" behind
        return ids

    async def _drop_or_deliver(
        self, channel: Channel, msg: OutboundMessage, chunk: Chunk
    ) -> list[str]:
        """One attempt, only if the budget allows now; [] when skipped (the next tick retries).

        Streaming edits use this: a stale edit queued behind a flood wait is worth nothing.
        """
        edit = msg.edit_of is not None
        if not await self._limits_of(channel).try_acquire(
            msg.chat_id, group=msg.is_group, edit=edit
        ):
            return []
        try:
            if msg.edit_of is not None:
                await channel.edit(msg.chat_id, msg.edit_of, chunk.rendered)
                metrics.EDITS.labels(msg.channel).inc()
                return [msg.edit_of]
            return [await channel.send(msg.chat_id, chunk.rendered, thread=msg.thread)]
        except TransientError as exc:
            if isinstance(exc, RateLimited):
                metrics.RATE_LIMITED.labels(channel.name).inc()
            log.debug("skipped a droppable update in %s:%s: %s", msg.channel, msg.chat_id, exc)
            return []

    async def _draft(self, channel: Channel, msg: OutboundMessage) -> list[str]:
        """Show a streaming preview if the budget allows now; skipped otherwise (next tick).

        :raises PermanentError: if the platform refuses drafts here (the streamer then edits).
        """
        chunks = render_chunks(msg.text, channel.capabilities, plain=True)
        if not chunks or msg.draft_id is None:
            return []
        limits = self._limits_of(channel)
        if not await limits.try_acquire(msg.chat_id, group=msg.is_group, edit=True):
            return []
        try:
            await channel.draft(msg.chat_id, msg.draft_id, chunks[0].rendered, msg.thread)
        except TransientError as exc:
            log.debug("skipped a draft in %s:%s: %s", msg.channel, msg.chat_id, exc)
            return []
        metrics.EDITS.labels(msg.channel).inc()
        return [str(msg.draft_id)]

    async def _send(self, channel: Channel, msg: OutboundMessage, chunk: Chunk, first: bool) -> str:
        reply_to = msg.reply_to if first else None
        return await self._formatted(
            chunk,
            lambda r: self._call(
                channel,
                msg,
                lambda: channel.send(msg.chat_id, r, reply_to=reply_to, thread=msg.thread),
            ),
        )

    async def _edit(
        self, channel: Channel, msg: OutboundMessage, target: str, chunk: Chunk
    ) -> None:
        await self._formatted(
            chunk,
            lambda r: self._call(
                channel, msg, lambda: channel.edit(msg.chat_id, target, r), edit=True
            ),
        )
        metrics.EDITS.labels(msg.channel).inc()

    async def _formatted(self, chunk: Chunk, op: Callable[[Rendered], Awaitable[T]]) -> T:
        try:
            return await op(chunk.rendered)
        except FormattingRejected as exc:
            log.info("formatting rejected, resending as plain text: %s", exc)
            metrics.RETRIES.labels("formatting").inc()
            return await op(plain_again(chunk))

    async def _call(
        self,
        channel: Channel,
        msg: OutboundMessage,
        fn: Callable[[], Awaitable[T]],
        *,
        edit: bool = False,
    ) -> T:
        limits = self._limits_of(channel)

        async def attempt() -> T:
            await limits.acquire(msg.chat_id, group=msg.is_group, edit=edit)
            return await fn()

        def on_retry(exc: BaseException, delay: float) -> None:
            kind = "rate_limited" if isinstance(exc, RateLimited) else "transient"
            metrics.RETRIES.labels(kind).inc()
            if isinstance(exc, RateLimited):
                metrics.RATE_LIMITED.labels(channel.name).inc()
            log.info("%s:%s: %s; retrying in %.1f s", channel.name, msg.chat_id, exc, delay)

        return await self.settings.retry.call(attempt, on_retry)

    async def _remove(self, channel: Channel, msg: OutboundMessage, message_id: str) -> None:
        try:
            if channel.capabilities.can_delete:
                await self._call(channel, msg, lambda: channel.delete(msg.chat_id, message_id))
            else:
                await self._call(
                    channel,
                    msg,
                    lambda: channel.edit(msg.chat_id, message_id, render("✓", "plain")),
                    edit=True,
                )
        except ChannelError as exc:
            log.warning("could not remove placeholder in %s:%s: %s", msg.channel, msg.chat_id, exc)

    async def _replace_placeholder(self, channel: Channel, msg: OutboundMessage, note: str) -> None:
        message_id = self.placeholders.take(msg.in_reply_to)
        if message_id is not None:
            await self._note_or_remove(channel, msg, message_id, note)

    async def _note_or_remove(
        self, channel: Channel, msg: OutboundMessage, message_id: str, note: str
    ) -> None:
        """Turn a placeholder into a short note; delete it if even that fails."""
        try:
            await self._call(
                channel,
                msg,
                lambda: channel.edit(msg.chat_id, message_id, render(note, "plain")),
                edit=True,
            )
        except ChannelError:
            await self._remove(channel, msg, message_id)
