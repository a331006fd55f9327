"""Typing indicators and "Thinking…" placeholders, one entry per accepted inbound message.

The dispatcher's lanes drive this registry: ACCEPTED opens an entry (starts typing, records the
placeholder's message id), the first reply chunk `take()`s the placeholder to edit it, DONE
`close()`s the entry. Nothing is left behind: the janitor expires entries a turn never closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from picobot.core.channel import Channel

log = logging.getLogger("picobot.placeholders")


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

    def open(self, key: str, channel: Channel, chat_id: str, thread: str | None) -> Entry:
        """Register an accepted message; start the typing indicator where the channel has one.

        A placeholder restored after a restart (`restore`) is kept: the reply edits it.
        """
        previous = self.close(key)
        entry = Entry(key, channel, chat_id, thread, self._clock())
        entry.message_id = previous.message_id if previous is not None else None
        if channel.capabilities.can_type:
            entry.typing = asyncio.create_task(
                _keep_typing(channel, chat_id, thread), name=f"typing {channel.name}:{chat_id}"
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
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _keep_typing(channel: Channel, chat_id: str, thread: str | None) -> None:
    # Platform typing indicators expire after a few seconds: refresh until cancelled.
    while True:
        try:
            await channel.typing(chat_id, thread)
        except Exception as exc:  # a failed indicator must never affect the reply
            log.debug("typing indicator failed on %s:%s: %s", channel.name, chat_id, exc)
        await asyncio.sleep(channel.capabilities.typing_interval)
