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
from dataclasses import replace
from typing import TYPE_CHECKING

from picobot.core import metrics
from picobot.core.channel import Channel
from picobot.core.errors import ChannelError
from picobot.core.messages import Kind, OutboundMessage
from picobot.outbound.delivery import DELIVERY_FAILED_NOTE, Delivery, DispatchSettings
from picobot.outbound.placeholders import Placeholders
from picobot.storage.outbox import Outbox

if TYPE_CHECKING:
    from picobot.core.bus import Topic

log = logging.getLogger("picobot.dispatch")

JANITOR_INTERVAL = 30.0


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
                result = await self._deliver(msg)
                if not future.done():  # the submitter may have given up meanwhile
                    future.set_result(result)
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
        outbox: Outbox | None = None,
    ) -> None:
        self.channels = channels
        self.settings = settings or DispatchSettings()
        self.placeholders = placeholders if placeholders is not None else Placeholders()
        self.outbox = outbox
        self.delivery = Delivery(channels, self.settings, self.placeholders, outbox)
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._janitor: asyncio.Task[None] | None = None

    # -- intake ---------------------------------------------------------------------------

    def submit(self, msg: OutboundMessage) -> asyncio.Future[list[str]]:
        """Queue `msg` on its chat's lane; the future gives the platform message ids.

        :raises KeyError: if `msg.channel` is not a running channel.
        """
        if msg.channel not in self.channels:
            raise KeyError(f"no channel named {msg.channel!r}")
        if new_id := self.delivery.migrated.get(msg.lane_key):
            msg = replace(msg, chat_id=new_id)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        lane = self._lanes.get(msg.lane_key)
        if lane is None:
            lane = self._lanes[msg.lane_key] = Lane(
                msg.lane_key, self.delivery, self._lane_idle, self.settings.lane_idle
            )
            metrics.LANES.set(len(self._lanes))
        lane.put(msg, future)
        return future

    async def record(self, msg: OutboundMessage) -> asyncio.Future[list[str]]:
        """Write a durable `msg` to the outbox, then queue it: nothing accepted is lost.

        :raises KeyError: if `msg.channel` is not a running channel.
        """
        if msg.channel not in self.channels:
            raise KeyError(f"no channel named {msg.channel!r}")
        if self.outbox is not None and msg.durable:
            await self.outbox.add(msg)
            self.delivery.recorded.add(msg.id)
        return self.submit(msg)

    async def send(self, msg: OutboundMessage) -> list[str]:
        """`record()` and wait for delivery; the platform message ids (what writers use)."""
        return await (await self.record(msg))

    async def run(self, outbound: Topic[OutboundMessage]) -> None:
        """Record and queue everything published on the outbound topic until it ends."""
        async for msg in outbound:
            try:
                await self.record(msg)
            except KeyError as exc:
                log.error("dropped outbound message: %s", exc)

    async def resume(self) -> int:
        """Queue what the outbox holds from before a restart, ahead of anything new.

        Placeholders left by the previous run are restored, so replies edit them (or the
        janitor removes them) instead of leaving "Thinking…" behind. Returns the count queued.
        """
        if self.outbox is None:
            return 0
        for key, channel_name, chat_id, thread, message_id in await self.outbox.placeholders():
            channel = self.channels.get(channel_name)
            if channel is not None:
                self.placeholders.restore(key, channel, chat_id, thread, message_id)
        pending = await self.outbox.pending()
        for item in pending:
            if item.message.channel not in self.channels:
                log.warning("outbox: channel %s is not running; kept", item.message.channel)
                continue
            self.delivery.progress[item.message.id] = item.sent
            self.delivery.recorded.add(item.message.id)
            self.submit(item.message)
        return len(pending)

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


__all__ = ["DELIVERY_FAILED_NOTE", "DispatchSettings", "Dispatcher", "Lane"]


def _retrieve(future: asyncio.Future[list[str]]) -> None:
    # Most submitters never await the result; the failure was logged already.
    if not future.cancelled():
        future.exception()
