"""The one outbound door: everything bound for a chat enters here.

    post(msg) ─► outbox (durable replies, recorded once) ─► the chat's lane ─► Delivery
                                                          ─► rate budget ─► retry ─► channel

Writers (streamed or whole replies), the `message` tool, commands, the intake's notices, the
web chat and the placeholder janitor all call `post` or `deliver`; nothing else writes a reply
to the outbox or queues on a lane.

Cluster mode: the outbox is shared, and a chat's durable replies are queued only by the node
that `delivers` to it (the owner of its partition). Another node records them and leaves them
there; the owner resumes a chat's pending replies when it takes the chat over (`resume`), picks
up what others recorded (`catch_up`), and stops the lanes of chats it gave up (`release`).
While older replies are being read back to go ahead of a lane (``catch_up(ahead=True)``), a new
reply to one of those chats queues as "next in the outbox", not in memory: the lane then takes
them all in the outbox's order, and the new one cannot overtake one the read missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from picobot.core.channel import Channel
from picobot.core.errors import Superseded
from picobot.core.messages import Kind, OutboundMessage
from picobot.core.tasks import cancel_and_wait
from picobot.media.store import MediaStore
from picobot.outbound.delivery import Delivery, DispatchSettings
from picobot.outbound.lanes import Job, Lanes
from picobot.outbound.placeholders import DELIVERY_FAILED_NOTE, Placeholders
from picobot.storage.records import OutboxStore

__all__ = ["DELIVERY_FAILED_NOTE", "DispatchSettings", "Outbound"]

log = logging.getLogger("picobot.dispatch")

JANITOR_INTERVAL = 30.0
_MARKERS = (Kind.ACCEPTED, Kind.DONE)

Chats = Callable[[str, str], bool]  # selects chats by (channel, chat id)


def _every(channel: str, chat_id: str) -> bool:
    return True


class Outbound:
    """Records, then delivers on per-chat lanes, in order; chats never wait for each other.

    Error handling: a message that fails permanently is logged once, its placeholder replaced by
    a short note, durable ones kept as dead letters, and its future fails with the
    `PermanentError`; other chats are unaffected.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        settings: DispatchSettings | None = None,
        placeholders: Placeholders | None = None,
        outbox: OutboxStore | None = None,
        media: MediaStore | None = None,
        delivers: Chats = _every,
    ) -> None:
        self.channels = channels
        self.delivers = delivers  # cluster mode: the chats this node delivers to now
        self.settings = settings or DispatchSettings()
        self.placeholders = placeholders if placeholders is not None else Placeholders()
        self.outbox = outbox
        self._delivery = Delivery(channels, self.settings, self.placeholders, outbox, media)
        fetch = self._fetch if outbox is not None else None
        self._lanes = Lanes(self._delivery, fetch, self.settings.spill_after)
        self._janitor: asyncio.Task[None] | None = None
        self._reading_back: list[Chats] = []  # chats whose older replies are read back now

    async def post(self, msg: OutboundMessage) -> asyncio.Future[list[str]]:
        """Record `msg` if it is durable, then queue it on its chat's lane.

        Returns at once after recording; the future gives the platform message ids.

        :raises KeyError: if `msg.channel` is not a running channel.
        """
        if msg.channel not in self.channels:
            raise KeyError(f"no channel named {msg.channel!r}")
        if new_id := self._delivery.migrated.get(msg.lane_key):
            msg = replace(msg, chat_id=new_id)
        if msg.kind in _MARKERS and self._marker_done_here(msg):
            return _nothing_to_send()
        durable = self.outbox is not None and msg.durable
        if durable:
            await self.outbox.add(msg)  # type: ignore[union-attr]
            if not self.delivers(*msg.lane_key):  # recorded: the chat's owner delivers it
                return _nothing_to_send()
            if any(which(*msg.lane_key) for which in self._reading_back):
                return self._lanes.put(Job(msg, durable), spilled=True)
        return self._lanes.put(Job(msg, durable))

    def _marker_done_here(self, msg: OutboundMessage) -> bool:
        """Whether an ACCEPTED or DONE marker needs no lane, as it makes no platform call (a
        job there costs as much as a reply's): ACCEPTED where the channel shows neither typing
        nor a placeholder; DONE with nothing queued for the chat (an ACCEPTED that opens an
        entry is either delivered or on the lane) and no placeholder left to remove (a reply
        took it, or there was none). Its entry, if any, is closed here: typing stops."""
        caps = self.channels[msg.channel].capabilities
        if msg.kind is Kind.ACCEPTED:
            return msg.in_reply_to is None or not (caps.can_type or (msg.text and caps.can_edit))
        if not self._lanes.idle(msg.lane_key):
            return False
        entry = self.placeholders.get(msg.in_reply_to)
        if entry is not None and entry.message_id is not None:
            return False  # the lane removes it
        self.placeholders.close(msg.in_reply_to)
        return True

    async def deliver(self, msg: OutboundMessage) -> list[str]:
        """`post()` and wait for delivery; the platform message ids.

        :raises KeyError: if `msg.channel` is not a running channel.
        :raises ChannelError: when delivery failed for good.
        """
        return await (await self.post(msg))

    async def resume(self, which: Chats = _every) -> int:
        """Queue what the outbox holds for the chats `which` selects (from before a restart;
        cluster mode: from the node that delivered them before), ahead of anything new.

        Placeholders left behind are restored, so replies edit them (or the janitor removes
        them) instead of leaving "Thinking…" behind. Returns the count queued.
        """
        await self.restore(which)
        return await self.catch_up(which, ahead=True)

    async def restore(self, which: Chats = _every) -> None:
        """Restore the placeholders the outbox holds for the chats `which` selects: their
        replies edit them (or the janitor removes them)."""
        if self.outbox is None:
            return
        for key, channel_name, chat_id, thread, message_id in await self.outbox.placeholders():
            channel = self.channels.get(channel_name)
            if channel is not None and which(channel_name, chat_id):
                self.placeholders.restore(key, channel, chat_id, thread, message_id)

    async def catch_up(self, which: Chats = _every, *, ahead: bool = False) -> int:
        """Queue the outbox's pending replies of the chats `which` selects that no lane here
        knows of yet (cluster mode: recorded by another node), after what the lanes hold, or
        `ahead` of it (older replies). Returns the count queued."""
        if self.outbox is None:
            return 0
        if ahead:
            self._reading_back.append(which)
        try:
            chats = await self.outbox.pending_chats()
        finally:
            if ahead:
                self._reading_back.remove(which)
        total = 0
        for name, chat_id, count in chats:
            if not which(name, chat_id):
                continue
            if name not in self.channels:
                log.warning("outbox: channel %s is not running; kept", name)
                continue
            missing = count - self._lanes.owed((name, chat_id))
            if missing > 0:
                # Read back as the lane goes, oldest first.
                self._lanes.put_spilled((name, chat_id), missing, ahead=ahead)
                total += missing
        return total

    async def release(self, which: Chats) -> int:
        """Stop delivering to the chats `which` selects (cluster mode: another node took them
        over); their queued replies stay in the outbox for it. Returns the lanes stopped."""
        self.placeholders.forget(lambda entry: which(entry.channel.name, entry.chat_id))
        error = Superseded("another node delivers to this chat now")
        return await self._lanes.stop(lambda key: which(*key), error)

    async def _fetch(self, key: tuple[str, str], exclude: Collection[str]) -> Job | None:
        assert self.outbox is not None
        item = await self.outbox.next_pending(*key, exclude)
        if item is None:
            return None
        return Job(item.message, durable=True, progress=dict(item.sent))

    # -- the placeholder janitor ------------------------------------------------------------

    def start_janitor(self) -> None:
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._sweep(), name="placeholder janitor")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_INTERVAL)
            await self.sweep_once()

    async def sweep_once(self) -> None:
        """Expire typing and placeholders that no turn closed (a crashed or lost turn)."""
        stale = self.placeholders.expire(
            typing_ttl=self.settings.typing_ttl, placeholder_ttl=self.settings.placeholder_ttl
        )
        for key in stale:
            entry = self.placeholders.get(key)
            if entry is not None:
                log.info("expiring placeholder in %s:%s", entry.channel.name, entry.chat_id)
                done = OutboundMessage(
                    entry.channel.name, entry.chat_id, "", kind=Kind.DONE, in_reply_to=key
                )
                with contextlib.suppress(KeyError):  # the channel is gone
                    await self.post(done)

    def statistics(self) -> dict[str, int]:
        return {
            "lanes": len(self._lanes),
            "queued": self._lanes.queued(),
            "in_memory": self._lanes.held(),
            "placeholders": len(self.placeholders),
        }

    # -- shutdown ---------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every lane to empty; True if all did."""
        return await self._lanes.drain(timeout)

    async def aclose(self) -> None:
        """Cancel lanes, the janitor and typing indicators; undelivered futures are cancelled."""
        if self._janitor is not None:
            await cancel_and_wait(self._janitor)
        await self._lanes.aclose()
        await self.placeholders.aclose()


def _nothing_to_send() -> asyncio.Future[list[str]]:
    """A `post` result with nothing for this node to send: done already, no message ids."""
    done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    done.set_result([])
    return done
