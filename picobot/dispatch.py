"""The outbound dispatcher: one lane per (channel, chat), each a task delivering in order.

    submit(msg) ─► Lane(channel, chat) ─► chunks ─► rate budget ─► retry policy ─► channel

Order is kept within a chat. Chats never wait for each other: a lane sleeping out a flood wait
(`RateLimited.retry_after`) holds only its own chat; the shared budget is taken per call, never
held while sleeping. Idle lanes end by themselves, so memory follows the active chats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from channels.base import Channel
from picobot import metrics
from picobot.chunks import Chunk, plain_again, render_chunks
from picobot.errors import (
    ChannelError,
    ChatMigrated,
    FormattingRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from picobot.messages import Kind, OutboundMessage
from picobot.placeholders import Placeholders
from picobot.ratelimit import RateLimits
from picobot.render import Rendered, render
from picobot.retry import RetryPolicy

if TYPE_CHECKING:
    from picobot.bus import Topic

T = TypeVar("T")
log = logging.getLogger("picobot.dispatch")

DELIVERY_FAILED_NOTE = "⚠️ Sorry, the reply could not be delivered."
LANE_IDLE_SECONDS = 60.0
JANITOR_INTERVAL = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    typing_ttl: float = 300.0
    placeholder_ttl: float = 600.0
    lane_idle: float = LANE_IDLE_SECONDS


class Lane:
    """Delivers one chat's messages, one after another."""

    def __init__(
        self,
        key: tuple[str, str],
        deliver: Callable[[OutboundMessage], Awaitable[list[str]]],
        on_idle: Callable[[Lane], None],
        idle_after: float,
    ) -> None:
        self.key = key
        self._deliver = deliver
        self._on_idle = on_idle
        self._idle_after = idle_after
        self._queue: asyncio.Queue[tuple[OutboundMessage, asyncio.Future[list[str]]]]
        self._queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"lane {key[0]}:{key[1]}")

    def put(self, msg: OutboundMessage, future: asyncio.Future[list[str]]) -> None:
        self._queue.put_nowait((msg, future))

    def __len__(self) -> int:
        return self._queue.qsize()

    async def join(self) -> None:
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle_after):
                    msg, future = await self._queue.get()
            except TimeoutError:
                if self._queue.empty():
                    self._on_idle(self)
                    return
                continue
            try:
                if not future.done():
                    future.set_result(await self._deliver(msg))
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:
                if not isinstance(exc, ChannelError):  # a bug, not a platform answer: say so
                    log.exception("delivery to %s:%s crashed", *self.key)
                if not future.done():
                    future.set_exception(exc)
            finally:
                self._queue.task_done()


class Dispatcher:
    """Routes outbound messages to per-chat lanes and delivers them.

    Error handling: a message that fails permanently is logged once, its placeholder replaced by
    a short note, and its future fails with the `PermanentError`; other chats are unaffected.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        settings: DispatchSettings | None = None,
        placeholders: Placeholders | None = None,
    ) -> None:
        self.channels = channels
        self.settings = settings or DispatchSettings()
        self.placeholders = placeholders if placeholders is not None else Placeholders()
        self._limits: dict[str, RateLimits] = {}  # per channel, made on first use
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._migrated: dict[tuple[str, str], str] = {}  # Telegram group -> supergroup ids
        self._janitor: asyncio.Task[None] | None = None

    # -- intake ---------------------------------------------------------------------------

    def submit(self, msg: OutboundMessage) -> asyncio.Future[list[str]]:
        """Queue `msg` on its chat's lane; the future gives the platform message ids.

        :raises KeyError: if `msg.channel` is not a running channel.
        """
        if msg.channel not in self.channels:
            raise KeyError(f"no channel named {msg.channel!r}")
        if new_id := self._migrated.get(msg.lane_key):
            msg = replace(msg, chat_id=new_id)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        lane = self._lanes.get(msg.lane_key)
        if lane is None:
            lane = self._lanes[msg.lane_key] = Lane(
                msg.lane_key, self._deliver, self._lane_idle, self.settings.lane_idle
            )
            metrics.LANES.set(len(self._lanes))
        lane.put(msg, future)
        return future

    async def run(self, outbound: Topic[OutboundMessage]) -> None:
        """Submit everything published on the outbound topic until it ends."""
        async for msg in outbound:
            try:
                self.submit(msg)
            except KeyError as exc:
                log.error("dropped outbound message: %s", exc)

    def start_janitor(self) -> None:
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._sweep(), name="placeholder janitor")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_INTERVAL)
            self.sweep_once()

    def sweep_once(self) -> None:
        """Expire typing and placeholders that no turn closed (a crashed or lost turn)."""
        stale = self.placeholders.expire(
            typing_ttl=self.settings.typing_ttl, placeholder_ttl=self.settings.placeholder_ttl
        )
        for key in stale:
            entry = self.placeholders.get(key)
            if entry is not None:
                log.info("expiring placeholder in %s:%s", entry.channel.name, entry.chat_id)
                self.submit(
                    OutboundMessage(
                        entry.channel.name, entry.chat_id, "", kind=Kind.DONE, in_reply_to=key
                    )
                )

    def statistics(self) -> dict[str, int]:
        return {
            "lanes": len(self._lanes),
            "queued": sum(len(lane) for lane in self._lanes.values()),
            "placeholders": len(self.placeholders),
        }

    def _limits_of(self, channel: Channel) -> RateLimits:
        # Lazily: channels may be added after the dispatcher exists (the daemon does so).
        limits = self._limits.get(channel.name)
        if limits is None:
            limits = self._limits[channel.name] = RateLimits(channel.capabilities.rate)
        return limits

    def _lane_idle(self, lane: Lane) -> None:
        if self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]
            metrics.LANES.set(len(self._lanes))

    # -- shutdown ---------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every lane to empty; True if all did."""
        lanes = list(self._lanes.values())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(lane.join() for lane in lanes))
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Cancel lanes and typing indicators. Undelivered messages' futures are cancelled."""
        tasks = [lane.task for lane in self._lanes.values()]
        if self._janitor is not None:
            tasks.append(self._janitor)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()
        await self.placeholders.aclose()

    # -- delivery ---------------------------------------------------------------------------

    async def _deliver(self, msg: OutboundMessage) -> list[str]:
        channel = self.channels[msg.channel]
        if msg.kind is Kind.ACCEPTED:
            await self._accept(channel, msg)
            return []
        if msg.kind is Kind.DONE:
            await self._finish(channel, msg)
            return []
        try:
            try:
                ids = await self._reply(channel, msg)
            except ChatMigrated as exc:
                log.info("%s:%s migrated to %s", msg.channel, msg.chat_id, exc.new_chat_id)
                self._migrated[msg.lane_key] = exc.new_chat_id
                ids = await self._reply(channel, replace(msg, chat_id=exc.new_chat_id))
        except ChannelError as exc:
            log.warning("giving up on a reply to %s:%s: %s", msg.channel, msg.chat_id, exc)
            metrics.OUTBOUND.labels(msg.channel, "failed").inc()
            await self._replace_placeholder(channel, msg, DELIVERY_FAILED_NOTE)
            raise
        metrics.OUTBOUND.labels(msg.channel, "sent").inc(len(ids))
        return ids

    async def _accept(self, channel: Channel, msg: OutboundMessage) -> None:
        if msg.in_reply_to is None:
            return
        entry = self.placeholders.open(msg.in_reply_to, channel, msg.chat_id, msg.thread)
        if not (msg.text and channel.capabilities.can_edit):
            return  # a placeholder we could not edit into the reply would be left behind
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

    async def _finish(self, channel: Channel, msg: OutboundMessage) -> None:
        entry = self.placeholders.close(msg.in_reply_to)
        if entry is not None and entry.message_id is not None:
            await self._remove(channel, msg, entry.message_id)

    async def _reply(self, channel: Channel, msg: OutboundMessage) -> list[str]:
        caps = channel.capabilities
        chunks = render_chunks(msg.text, caps, plain=msg.plain)
        if not chunks:
            return []
        if msg.droppable:
            return await self._drop_or_deliver(channel, msg, chunks[0])
        placeholder = (
            None if msg.edit_of or not caps.can_edit else self.placeholders.take(msg.in_reply_to)
        )
        target = msg.edit_of or placeholder
        ids: list[str] = []
        try:
            for index, chunk in enumerate(chunks):
                if index == 0 and target is not None:
                    try:
                        await self._edit(channel, msg, target, chunk)
                        ids.append(target)
                        continue
                    except PermanentError as exc:
                        if msg.edit_of is not None:
                            raise
                        # The placeholder is not editable (deleted by a user?): send anew.
                        log.info(
                            "placeholder not editable in %s:%s: %s", msg.channel, msg.chat_id, exc
                        )
                ids.append(await self._send(channel, msg, chunk, first=index == 0))
        except ChannelError:
            if placeholder is not None and placeholder not in ids:
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


def _retrieve(future: asyncio.Future[list[str]]) -> None:
    # Most submitters never await the result; the failure was logged already.
    if not future.cancelled():
        future.exception()
