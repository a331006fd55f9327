"""The outbox as the rest of picobot sees it: a declared protocol and its records.

Backends: `picobot.storage.outbox.Outbox` (SQLite in data_dir, the default) and, in cluster
mode, `picobot.cluster.outbox.RedisOutbox` (shared by every node). Every method raises
`StorageError` when the backend failed (nothing of that call was kept); a backend that shares
its records between nodes raises `Superseded` from the progress writes (`chunk_sent`,
`delivered`, `dead`) once another node took the message's delivery over.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple, Protocol

from picobot.core.messages import OutboundMessage


class Pending(NamedTuple):
    message: OutboundMessage
    sent: dict[int, str]  # chunk index -> platform message id, already delivered


class DeadLetter(NamedTuple):
    id: str
    channel: str
    chat_id: str
    text: str
    error: str
    created: float


class Placeholder(NamedTuple):
    """A "Thinking…" message shown for an inbound message whose turn has not finished."""

    key: str  # the InboundMessage.id
    channel: str
    chat_id: str
    thread: str | None
    message_id: str


class OutboxStore(Protocol):
    """Durable replies until delivered, their per-chunk progress, dead letters, placeholders."""

    async def add(self, msg: OutboundMessage) -> None:
        """Record `msg` as pending (idempotent: a message already recorded keeps its progress)."""

    async def chunk_sent(self, msg: OutboundMessage, index: int, platform_id: str) -> None:
        """The platform acknowledged chunk `index` of `msg` as `platform_id`."""

    async def delivered(self, msg: OutboundMessage) -> None:
        """Prune `msg`; its inbound message counts as answered."""

    async def dead(self, msg: OutboundMessage, error: str) -> None:
        """Keep a permanently failed message, with its error, out of the delivery queue."""

    async def pending(self) -> list[Pending]:
        """Undelivered messages, oldest first (the order they were accepted in)."""

    async def pending_chats(self) -> list[tuple[str, str, int]]:
        """(channel, chat id, count) of every chat with undelivered messages."""

    async def next_pending(
        self, channel: str, chat_id: str, exclude: Collection[str] = ()
    ) -> Pending | None:
        """The chat's oldest undelivered message whose id is not in `exclude`."""

    async def holds(self, msg_id: str) -> bool:
        """Whether `msg_id` was recorded and is not delivered yet (pending or a dead letter)."""

    async def placeholder(self, record: Placeholder) -> None:
        """Remember the "Thinking…" message sent for `record.key`."""

    async def placeholders(self) -> list[Placeholder]:
        """Placeholders of turns that never finished and that no delivered reply took."""

    async def counts(self) -> dict[str, int]:
        """{"pending": n, "dead": n}."""

    async def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
