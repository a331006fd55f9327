"""Typing indicators and "Thinking…" placeholders, one entry per accepted inbound message.

The dispatcher's lanes drive this registry: ACCEPTED opens an entry (starts typing, records the
placeholder's message id), the first reply chunk `take()`s the placeholder to edit it, DONE
`close()`s the entry. Nothing is left behind: the janitor expires entries a turn never closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from picobot.core.channel import Channel
from picobot.core.errors import ChannelError
from picobot.core.messages import OutboundMessage
from picobot.core.tasks import cancel_and_wait
from picobot.outbound.ratelimit import Budget
from picobot.storage.records import OutboxStore, Placeholder
from picobot.text.render import render

if TYPE_CHECKING:
    from picobot.outbound.delivery import Calls

log = logging.getLogger("picobot.placeholders")
dispatch_log = logging.getLogger("picobot.dispatch")

DELIVERY_FAILED_NOTE = "⚠️ Sorry, the reply could not be delivered."


@dataclass(slots=True, eq=False)
class Entry:
    key: str  # the InboundMessage.id
    channel: Channel
    chat_id: str
    thread: str | None
    created: float
    message_id: str | None = None  # the placeholder message, until a reply takes it
    typing: asyncio.Task[None] | None = field(default=None, repr=False)

    def stop_typing(self) -> None:
        if self.typing is not None:
            self.typing.cancel()
            self.typing = None


class Placeholders:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def open(
        self, key: str, channel: Channel, chat_id: str, thread: str | None, budget: Budget
    ) -> Entry:
        """Register an accepted message; start the typing indicator where the channel has one
        (it takes only spare `budget`).

        A placeholder restored after a restart (`restore`) is kept: the reply edits it.
        """
        previous = self.close(key)
        entry = Entry(key, channel, chat_id, thread, self._clock())
        entry.message_id = previous.message_id if previous is not None else None
        if channel.capabilities.can_type:
            entry.typing = asyncio.create_task(
                _keep_typing(channel, chat_id, thread, budget),
                name=f"typing {channel.name}:{chat_id}",
            )
        self._entries[key] = entry
        return entry

    def get(self, key: str | None) -> Entry | None:
        return self._entries.get(key) if key else None

    def take(self, key: str | None) -> str | None:
        """The unused placeholder's message id, handed over once (the reply edits it)."""
        entry = self.get(key)
        if entry is None or entry.message_id is None:
            return None
        message_id, entry.message_id = entry.message_id, None
        return message_id

    def put_back(self, key: str | None, message_id: str) -> None:
        """Return a taken placeholder (its reply will be retried)."""
        entry = self.get(key)
        if entry is not None and entry.message_id is None:
            entry.message_id = message_id

    def restore(
        self, key: str, channel: Channel, chat_id: str, thread: str | None, message_id: str
    ) -> None:
        """A placeholder the previous run left: no typing, just the message to edit or remove."""
        if key not in self._entries:
            entry = Entry(key, channel, chat_id, thread, self._clock(), message_id)
            self._entries[key] = entry

    def close(self, key: str | None) -> Entry | None:
        """Forget the entry and stop its typing; the caller removes an unused placeholder."""
        entry = self._entries.pop(key, None) if key else None
        if entry is not None:
            entry.stop_typing()
        return entry

    def forget(self, which: Callable[[Entry], bool]) -> None:
        """Drop the entries `which` selects, leaving their messages (another node has them)."""
        for key in [key for key, entry in self._entries.items() if which(entry)]:
            self.close(key)

    def expire(self, *, typing_ttl: float, placeholder_ttl: float) -> list[str]:
        """Stop typing older than `typing_ttl`; return keys older than `placeholder_ttl`."""
        now = self._clock()
        stale = []
        for entry in self._entries.values():
            age = now - entry.created
            if age > typing_ttl:
                entry.stop_typing()
            if age > placeholder_ttl:
                stale.append(entry.key)
        return stale

    async def aclose(self) -> None:
        tasks = [e.typing for e in self._entries.values() if e.typing is not None]
        for entry in self._entries.values():
            entry.stop_typing()
        self._entries.clear()
        await cancel_and_wait(*tasks)


async def _keep_typing(channel: Channel, chat_id: str, thread: str | None, budget: Budget) -> None:
    # Platform typing indicators expire after a few seconds: refresh until cancelled. Only
    # with spare budget: a burst to 300 chats sent 300 indicators before the first reply.
    while True:
        try:
            async with budget.try_spare(chat_id) as spare:
                if spare:
                    await channel.typing(chat_id, thread)
        except Exception as exc:  # a failed indicator must never affect the reply
            log.debug("typing indicator failed on %s:%s: %s", channel.name, chat_id, exc)
        await asyncio.sleep(channel.capabilities.typing_interval)


class PlaceholderCalls:
    """The platform side of placeholders: show one, edit it into a note, remove it."""

    def __init__(self, registry: Placeholders, calls: Calls, outbox: OutboxStore | None) -> None:
        self.registry = registry
        self._calls = calls
        self._outbox = outbox

    async def accept(self, channel: Channel, msg: OutboundMessage) -> None:
        """An inbound message was accepted: typing on, and the "Thinking…" placeholder."""
        if msg.in_reply_to is None:
            return
        budget = self._calls.limits(channel)
        entry = self.registry.open(msg.in_reply_to, channel, msg.chat_id, msg.thread, budget)
        if entry.message_id is not None or not (msg.text and channel.capabilities.can_edit):
            return  # restored after a restart; or one we could not edit into the reply
        try:
            entry.message_id = await self._calls(
                channel,
                msg,
                lambda: channel.send(
                    msg.chat_id, render(msg.text, "plain"), reply_to=msg.reply_to, thread=msg.thread
                ),
            )
        except ChannelError as exc:
            dispatch_log.info("no placeholder in %s:%s: %s", msg.channel, msg.chat_id, exc)
            return
        if self._outbox is not None:  # so a restart can edit or remove it
            record = Placeholder(
                msg.in_reply_to, msg.channel, msg.chat_id, msg.thread, entry.message_id
            )
            await self._outbox.placeholder(record)

    async def finish(self, channel: Channel, msg: OutboundMessage) -> None:
        """The turn is over: typing off; a placeholder no reply took is removed."""
        entry = self.registry.close(msg.in_reply_to)
        if entry is not None and entry.message_id is not None:
            await self.remove(channel, msg, entry.message_id)

    async def remove(self, channel: Channel, msg: OutboundMessage, message_id: str) -> None:
        try:
            if channel.capabilities.can_delete:
                await self._calls(channel, msg, lambda: channel.delete(msg.chat_id, message_id))
            else:
                await self._calls(
                    channel,
                    msg,
                    lambda: channel.edit(msg.chat_id, message_id, render("✓", "plain")),
                    edit=True,
                )
        except ChannelError as exc:
            dispatch_log.warning(
                "could not remove placeholder in %s:%s: %s", msg.channel, msg.chat_id, exc
            )

    async def replace_with_note(self, channel: Channel, msg: OutboundMessage, note: str) -> None:
        message_id = self.registry.take(msg.in_reply_to)
        if message_id is not None:
            await self.note_or_remove(channel, msg, message_id, note)

    async def note_or_remove(
        self, channel: Channel, msg: OutboundMessage, message_id: str, note: str
    ) -> None:
        """Turn a placeholder into a short note; delete it if even that fails."""
        try:
            await self._calls(
                channel,
                msg,
                lambda: channel.edit(msg.chat_id, message_id, render(note, "plain")),
                edit=True,
            )
        except ChannelError:
            await self.remove(channel, msg, message_id)
