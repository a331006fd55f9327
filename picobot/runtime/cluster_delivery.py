"""Cluster mode: who delivers what. A chat's replies are delivered by the node that owns the
chat's inbound partition — the node that runs its turns.

    any node: post(reply) ─► shared outbox (Redis) ─► a lane here, if this node owns the chat
    partition taken ─► resume: the chats' placeholders and pending replies, at their next chunk
    partition lost  ─► release: their lanes stop (the progress writes were fenced anyway)
    every round     ─► catch_up: replies other nodes recorded for chats this node owns

Channels that answer a client connected to this node (the web chat) keep their replies in the
node's own SQLite outbox and are always delivered here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from picobot.cluster.partitions import InboundStreams, partition_of
from picobot.core.errors import StorageError
from picobot.outbound.door import Chats, Outbound

log = logging.getLogger("picobot.cluster")


class PartitionDelivery:
    """Follows this node's partitions with the outbound door's lanes (`follow()` after every
    upkeep round). Error handling: a resume that fails is tried again the next round."""

    def __init__(self, streams: InboundStreams, is_local: Callable[[str], bool]) -> None:
        self._streams = streams
        self._is_local = is_local
        self.outbound: Outbound | None = None  # set once the daemon has it
        # Partitions whose pending replies were resumed, with the lease token they were under.
        self._delivering: dict[int, int] = {}

    def delivers(self, channel: str, chat_id: str) -> bool:
        """Whether this node delivers the chat's replies now: it holds the chat's partition
        and has restored its placeholders. Until then a reply is only recorded; the resume
        reads it back, ahead of the newer ones."""
        if self._is_local(channel):
            return True
        p = partition_of(channel, chat_id)
        return p in self._delivering and p in self._streams.owned

    def _chats_of(self, partitions: Collection[int]) -> Chats:
        def chosen(channel: str, chat_id: str) -> bool:
            return not self._is_local(channel) and partition_of(channel, chat_id) in partitions

        return chosen

    def stop(self) -> None:
        """Shutdown: follow no more (the door and the outbox close; the partitions' next
        owners deliver what is left)."""
        self.outbound = None

    async def follow(self) -> None:
        """Stop delivering to the partitions given up, resume the ones taken, catch up."""
        outbound = self.outbound
        if outbound is None:
            return
        owned = {p: self._streams.leases[p].token for p in self._streams.owned}
        # Lost, or lost and taken again meanwhile (another node may have delivered since).
        lost = {p for p, token in self._delivering.items() if owned.get(p) != token}
        if lost:
            for p in lost:
                del self._delivering[p]
            stopped = await outbound.release(self._chats_of(lost))
            log.info("partitions %s: given up, %d delivery lanes stopped", sorted(lost), stopped)
        for p, token in sorted(owned.items()):
            if p in self._delivering or token is None:
                continue
            chats = self._chats_of({p})
            try:
                await outbound.restore(chats)  # before any reply to them goes out from here
                # Replies recorded from now on queue here; the ones recorded before, read back
                # now, go ahead of them (the door keeps the new ones in the outbox's order).
                self._delivering[p] = token
                count = await outbound.catch_up(chats, ahead=True)
            except StorageError as exc:
                self._delivering.pop(p, None)
                log.warning("partition %d: could not resume its replies (%s); retrying", p, exc)
                continue
            if count:
                log.info("partition %d: resuming %d pending replies", p, count)
        try:  # replies other nodes recorded (or this one, while resuming) for chats it owns
            await outbound.catch_up(self.delivers)
        except StorageError as exc:
            log.debug("outbox catch-up: %s", exc)
