"""Two outboxes as one, chosen by channel: cluster mode keeps the replies of channels that
answer a client connected to this node (the web chat) in the node's own SQLite outbox, and
shares every other channel's replies through Redis."""

from __future__ import annotations

from collections.abc import Callable, Collection

from picobot.core.messages import OutboundMessage
from picobot.storage.records import DeadLetter, OutboxStore, Pending, Placeholder


class RoutedOutbox:
    """`OutboxStore`: a channel's records live in `local` if `is_local(channel)`, else in
    `shared`. Reads over every chat ask both."""

    def __init__(
        self, local: OutboxStore, shared: OutboxStore, is_local: Callable[[str], bool]
    ) -> None:
        self.local = local
        self.shared = shared
        self._is_local = is_local

    def _for(self, channel: str) -> OutboxStore:
        return self.local if self._is_local(channel) else self.shared

    async def add(self, msg: OutboundMessage) -> None:
        await self._for(msg.channel).add(msg)

    async def chunk_sent(self, msg: OutboundMessage, index: int, platform_id: str) -> None:
        await self._for(msg.channel).chunk_sent(msg, index, platform_id)

    async def delivered(self, msg: OutboundMessage) -> None:
        await self._for(msg.channel).delivered(msg)

    async def dead(self, msg: OutboundMessage, error: str) -> None:
        await self._for(msg.channel).dead(msg, error)

    async def placeholder(self, record: Placeholder) -> None:
        await self._for(record.channel).placeholder(record)

    async def next_pending(
        self, channel: str, chat_id: str, exclude: Collection[str] = ()
    ) -> Pending | None:
        return await self._for(channel).next_pending(channel, chat_id, exclude)

    async def holds(self, msg_id: str) -> bool:
        return await self.local.holds(msg_id) or await self.shared.holds(msg_id)

    async def pending(self) -> list[Pending]:
        return await self.local.pending() + await self.shared.pending()

    async def pending_chats(self) -> list[tuple[str, str, int]]:
        return await self.local.pending_chats() + await self.shared.pending_chats()

    async def placeholders(self) -> list[Placeholder]:
        return await self.local.placeholders() + await self.shared.placeholders()

    async def counts(self) -> dict[str, int]:
        local, shared = await self.local.counts(), await self.shared.counts()
        return {name: local.get(name, 0) + shared.get(name, 0) for name in local | shared}

    async def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        letters = await self.local.dead_letters(limit) + await self.shared.dead_letters(limit)
        return sorted(letters, key=lambda d: d.created, reverse=True)[:limit]
