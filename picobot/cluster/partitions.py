"""Inbound messages over Redis Streams, partitioned by conversation.

    publish(msg) ─► XADD picobot:in:<crc32(channel:chat) % 16>
    owner of <p> ─► XREADGROUP (own pending entries first, then new) ─► handle(entry)
    turn done    ─► done(msg.id) ─► XACK (fenced by the lease the turn started under)
    turn undone  ─► again(msg.id) ─► stays pending, read again (its reply was not recorded)

A partition is read by one node at a time, the holder of the lease ``partition:<p>``; which
node wants which partition comes from rendezvous hashing over the live nodes, so every node
computes the same spread. Taking a partition claims its pending entries (XAUTOCLAIM): the work
a dead node never finished runs again on the new owner. A node gives up a partition it no
longer wants only once its entries in flight are done and no read of it is in flight (it stops
reading it first): an entry a read took after the release would reach the new owner after
newer ones. It drops one whose lease it cannot renew at once (reading stops; its acks are
refused by the fence).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from picobot.cluster import cancellable, key
from picobot.cluster.lease import FENCE_CHECK, Fence, Lease
from picobot.core.messages import InboundMessage
from picobot.storage import codec

log = logging.getLogger("picobot.cluster")

PARTITIONS = 16
GROUP = "picobot"
MAXLEN = 10_000  # approximate: acked history kept per stream
READ_COUNT = 100

_XADD = """
if #KEYS == 2 and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return redis.error_reply('FENCED')
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
"""
_XACK = FENCE_CHECK + "return redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])"


class Entry(NamedTuple):
    partition: int
    id: str  # the stream entry id
    message: InboundMessage
    pending: bool = False  # read again: taken over from another node, or from before a restart


def partition_of(channel: str, chat_id: str, partitions: int = PARTITIONS) -> int:
    """The partition of a chat: all its messages meet there, in order."""
    return zlib.crc32(f"{channel}:{chat_id}".encode()) % partitions


def stream_key(partition: int) -> str:
    return key("in", partition)


def wished(nodes: Iterable[str], node: str, partitions: int = PARTITIONS) -> set[int]:
    """The partitions `node` should own among `nodes` (rendezvous hashing: stable, even)."""
    names = sorted(set(nodes) | {node})
    return {
        p
        for p in range(partitions)
        if max(names, key=lambda n: (zlib.crc32(f"{n}/{p}".encode()), n)) == node
    }


class InboundStreams:
    """This node's side of the partitioned inbound streams.

    Resource handling: `setup()` creates the consumer group on every stream; the client
    belongs to the caller. Error handling: Redis errors propagate (`RedisError`); a `maintain()`
    round that cannot renew a partition drops it without raising.
    """

    def __init__(
        self, redis: Redis, node: str, *, ttl: float, partitions: int = PARTITIONS
    ) -> None:
        self.redis = redis
        self.node = node
        self.partitions = partitions
        self.leases = {p: Lease(redis, f"partition:{p}", node, ttl) for p in range(partitions)}
        self.owned: set[int] = set()
        self._unread_pending: set[int] = set()  # claimed partitions whose pending we re-read
        self._leaving: set[int] = set()  # partitions to give up: not read any more
        self._reading: frozenset[int] = frozenset()  # those the read in flight takes new entries of
        self._cursor: dict[int, str] = {}
        self._inflight: dict[str, Entry] = {}  # message id -> entry handed out, not yet done
        self._fences: dict[str, Fence] = {}  # message id -> the lease its turn started under
        self._again: dict[str, int] = {}  # entry id -> partition: to run again, even if answered
        self._xadd = redis.register_script(_XADD)
        self._xack = redis.register_script(_XACK)
        self.changed = asyncio.Event()  # set when this node takes a partition

    async def setup(self) -> None:
        """Create the consumer group on every stream (idempotent)."""
        for p in range(self.partitions):
            try:
                await self.redis.xgroup_create(stream_key(p), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # -- publishing (any node) ----------------------------------------------------------------

    async def publish(self, msg: InboundMessage, fence: Fence | None = None) -> str:
        """Append `msg` to its partition's stream; the entry id.

        :raises redis.exceptions.ResponseError: ``FENCED`` if `fence` is stale (another node
            took the lease it belongs to).
        """
        p = partition_of(msg.channel, msg.chat_id, self.partitions)
        keys = [stream_key(p)] + ([fence.key] if fence else [])
        args: list[str | int] = [MAXLEN, codec.dump(msg)]
        if fence:
            args.append(fence.token)
        return str(await self._xadd(keys=keys, args=args))

    # -- ownership ----------------------------------------------------------------------------

    def busy(self, partition: int) -> bool:
        return any(e.partition == partition for e in self._inflight.values())

    async def maintain(self, live: Collection[str]) -> None:
        """One round: renew what we hold, take what we should own, give up what we should not.

        `live` names the live nodes (this one included or not).
        """
        want = wished(live, self.node, self.partitions)
        for p in sorted(self.owned):
            try:
                renewed = await self.leases[p].renew()
            except RedisError as exc:
                log.warning("partition %d: cannot renew (%s); dropped", p, exc)
                renewed = False
            if not renewed:
                self._drop(p)
                self.leases[p].forget()
        for p in sorted(self.owned):
            await self._adopt_strays(p)
        self._leaving = self.owned - want  # read no more; given up once no read has them
        for p in sorted(self._leaving):
            if not self.busy(p) and p not in self._reading:
                self._drop(p)
                await self.leases[p].release()
                log.info("partition %d: handed over", p)
        for p in sorted(want - self.owned):
            if await self.leases[p].try_acquire():
                await self._claim(p)
                self.owned.add(p)
                self._unread_pending.add(p)
                self._cursor[p] = "0"
                self.changed.set()
                log.info("partition %d: taken", p)

    async def release_all(self) -> None:
        """Give up every partition now (shutdown, after the turns ended)."""
        for p in sorted(self.owned):
            self._drop(p)
            await self.leases[p].release()

    def drop_all(self) -> None:
        """Stop reading every partition at once, without Redis (it is unreachable)."""
        for p in sorted(self.owned):
            self._drop(p)
            self.leases[p].forget()

    def _drop(self, p: int) -> None:
        self.owned.discard(p)
        self._unread_pending.discard(p)
        self._leaving.discard(p)
        for entry_id in [e for e, partition in self._again.items() if partition == p]:
            del self._again[entry_id]  # the next owner decides (it may have answered it)

    async def _adopt_strays(self, p: int) -> None:
        # A read in flight while the partition changed hands can leave entries with the
        # previous owner, who skips them. We hold the lease, so they are ours: claim, re-read.
        info: Any = await self.redis.xpending(stream_key(p), GROUP)
        consumers = info.get("consumers") or [] if isinstance(info, dict) else []
        if any(c.get("name") != self.node and int(c.get("pending", 0)) for c in consumers):
            await self._claim(p)
            self._unread_pending.add(p)
            self._cursor[p] = "0"

    async def _claim(self, p: int) -> None:
        # We hold the lease: every pending entry of this stream is ours now, whoever had it.
        cursor = "0-0"
        while True:
            answer = await self.redis.xautoclaim(stream_key(p), GROUP, self.node, 0, cursor)
            cursor = str(answer[0])
            if cursor == "0-0":
                return

    # -- consuming ----------------------------------------------------------------------------

    async def read(self, block: float) -> list[Entry]:
        """The next entries of the partitions this node owns, in stream order per partition:
        first the pending entries of partitions just taken, then new ones (waiting up to
        `block` s). Entries already handed out and not done are not returned again."""
        entries: list[Entry] = []
        for p in sorted(self._unread_pending):
            batch = await self._read({stream_key(p): self._cursor[p]}, None, pending=True)
            if batch:
                self._cursor[p] = batch[-1].id
            else:
                self._unread_pending.discard(p)
            entries += batch
        if entries:
            return [e for e in entries if e.message.id not in self._inflight]
        reading = self.owned - self._unread_pending - self._leaving
        if not reading:
            self.changed.clear()
            try:
                async with asyncio.timeout(block):
                    await self.changed.wait()
            except TimeoutError:
                pass
            return []
        self._reading = frozenset(reading)
        try:
            streams = {stream_key(p): ">" for p in sorted(reading)}
            return await self._read(streams, max(1, int(block * 1000)))
        finally:
            self._reading = frozenset()

    async def _read(
        self, streams: dict[Any, Any], block: int | None, *, pending: bool = False
    ) -> list[Entry]:
        answer: Any = await self.redis.xreadgroup(
            GROUP, self.node, streams, count=READ_COUNT, block=block
        )
        entries = []
        for stream, items in answer or []:
            p = int(str(stream).rsplit(":", 1)[1])
            for entry_id, fields in items:
                if fields is None:  # deleted by trimming while pending
                    continue
                try:
                    msg = codec.load_inbound(fields["m"])
                except (KeyError, TypeError, ValueError):
                    log.error("partition %d: unreadable entry %s dropped", p, entry_id)
                    await self.redis.xack(stream_key(p), GROUP, entry_id)
                    continue
                # An entry put back by `again` did not finish here: not "maybe answered".
                again = self._again.pop(str(entry_id), None) is not None
                entries.append(Entry(p, str(entry_id), msg, pending and not again))
        return entries

    def taken(self, entry: Entry) -> None:
        """`entry` was handed to the agent: it is in flight until `done(entry.message.id)`,
        under the partition's lease as it is now (`turn_fence`)."""
        self._inflight[entry.message.id] = entry
        fence = self.leases[entry.partition].fence
        if fence is not None:
            self._fences[entry.message.id] = fence

    def turn_fence(self, message_id: str) -> Fence | None:
        """The partition lease the turn of `message_id` started under, while it runs here;
        None for a message not read from the streams here (the web chat, a reminder)."""
        return self._fences.get(message_id)

    async def done(self, message_id: str) -> bool:
        """The turn of `message_id` ended: ack its entry. False if not acked (not in flight
        here, or the partition moved to another node since the turn started: that node runs
        it again — or this one, if it took the partition back meanwhile)."""
        entry = self._inflight.pop(message_id, None)
        fence = self._fences.pop(message_id, None)
        if entry is None:
            return False
        if fence is None or fence != self.leases[entry.partition].fence:
            self._reread(entry)
            return False
        try:
            await self._xack(
                keys=[fence.key, stream_key(entry.partition)],
                args=[fence.token, GROUP, entry.id],
            )
        except ResponseError as exc:
            if "FENCED" not in str(exc):
                raise
            return False
        return True

    def again(self, message_id: str) -> None:
        """The turn of `message_id` ended without its reply recorded (Redis failed, or the
        partition moved): not acked; it runs again, on this node's next read of the
        partition's pending entries if it still holds it, else on the next owner."""
        entry = self._inflight.pop(message_id, None)
        self._fences.pop(message_id, None)
        if entry is not None:
            self._reread(entry)

    def _reread(self, entry: Entry) -> None:
        if entry.partition in self.owned:
            self._again[entry.id] = entry.partition
            self._unread_pending.add(entry.partition)
            self._cursor[entry.partition] = "0"
            self.changed.set()

    async def owners(self) -> dict[int, str | None]:
        """Who holds each partition now (None: nobody)."""
        values = await self.redis.mget([lease.key for lease in self.leases.values()])
        return {
            p: (str(v).split(" ", 1)[0] if v is not None else None)
            for p, v in zip(self.leases, values, strict=True)
        }

    async def backlog(self) -> int:
        """Entries not yet acked, over all partitions (delivered or not)."""
        total = 0
        for p in range(self.partitions):
            info = await self.redis.xinfo_groups(stream_key(p))
            for group in info:
                if group.get("name") == GROUP:
                    total += int(group.get("pending") or 0) + int(group.get("lag") or 0)
        return total


async def consume(
    streams: InboundStreams,
    handle: Callable[[Entry], Awaitable[None]],
    *,
    block: float = 1.0,
) -> None:
    """Hand every entry of the owned partitions to `handle`, in order, until cancelled.

    `handle` is awaited one entry at a time (it only queues the message for the agent); an
    entry it fails on is logged and left pending. Redis errors are retried after `block` s.
    """
    while True:
        try:
            entries = await cancellable(streams.read(block))
        except RedisError as exc:
            log.debug("inbound streams: %s", exc)
            await asyncio.sleep(block)
            continue
        for entry in entries:
            if entry.partition not in streams.owned:
                continue  # dropped meanwhile: the next owner reads it
            streams.taken(entry)
            try:
                await handle(entry)
            except Exception:  # stays pending: runs again when the partition changes hands
                log.exception("partition %d: could not hand over %s", entry.partition, entry.id)
