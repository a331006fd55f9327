"""The shared outbox in cluster mode: progress writes fenced by the partition's lease, and the
outbound door delivering only the chats this node owns (against a real redis-server).

The behaviour both backends share is tested in tests/core/test_outbox.py (parametrised)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from picobot.cluster.lease import Lease
from picobot.cluster.outbox import RedisOutbox
from picobot.cluster.partitions import InboundStreams, partition_of
from picobot.core.errors import Superseded
from picobot.core.messages import OutboundMessage
from picobot.outbound.door import Outbound
from picobot.runtime.cluster_delivery import PartitionDelivery
from tests.fakes.memory_channel import MemoryChannel

CHAT = "c"
P = partition_of("memory", CHAT)


def fenced_outbox(redis: Redis, lease: Lease) -> RedisOutbox:
    return RedisOutbox(redis, fence=lambda p: lease.fence if p == P else None)


async def test_a_node_that_lost_the_partition_cannot_write_progress(redis: Redis) -> None:
    lease = Lease(redis, f"partition:{P}", "a", 5)
    box = fenced_outbox(redis, lease)
    msg = OutboundMessage("memory", CHAT, "hello")
    await box.add(msg)  # anyone may record a reply
    with pytest.raises(Superseded):  # but only the partition's holder delivers it
        await box.chunk_sent(msg, 0, "m1")
    assert await lease.try_acquire()
    await box.chunk_sent(msg, 0, "m1")
    # Paused past its lease: another node took the partition over.
    await redis.delete(lease.key)
    assert await Lease(redis, f"partition:{P}", "b", 5).try_acquire()
    for write in (box.chunk_sent(msg, 1, "m2"), box.delivered(msg), box.dead(msg, "late")):
        with pytest.raises(Superseded):
            await write
    [pending] = await box.pending()
    assert pending.sent == {0: "m1"}  # what the new owner resumes from
    assert await box.dead_letters() == []


async def test_the_lane_stops_when_its_writes_are_refused(redis: Redis) -> None:
    lease = Lease(redis, f"partition:{P}", "a", 5)
    assert await lease.try_acquire()
    channel = MemoryChannel()
    outbound = Outbound({"memory": channel}, outbox=fenced_outbox(redis, lease))
    try:
        await outbound.deliver(OutboundMessage("memory", CHAT, "first"))
        await redis.delete(lease.key)
        assert await Lease(redis, f"partition:{P}", "b", 5).try_acquire()
        channel.hold[CHAT] = asyncio.Event()
        second = await outbound.post(OutboundMessage("memory", CHAT, "second"))
        third = await outbound.post(OutboundMessage("memory", CHAT, "third"))
        await asyncio.wait_for(channel.gated.wait(), 5)
        channel.hold[CHAT].set()  # the chunk in flight goes out; its progress is refused
        for future in (second, third):
            with pytest.raises(Superseded):
                await future
        assert channel.visible(CHAT) == ["first", "second"]  # "third" left to the new owner
        box = RedisOutbox(redis)
        assert [p.message.text for p in await box.pending()] == ["second", "third"]
        assert outbound.statistics()["lanes"] == 0
    finally:
        await outbound.aclose()


async def test_the_door_delivers_only_the_chats_this_node_owns(redis: Redis) -> None:
    channel = MemoryChannel()
    owned: set[str] = set()
    outbound = Outbound(
        {"memory": channel},
        outbox=RedisOutbox(redis),
        delivers=lambda name, chat: chat in owned,
    )
    try:
        # Recorded here, left to the owner (another node): nothing is sent from here.
        assert await outbound.deliver(OutboundMessage("memory", CHAT, "one")) == []
        await outbound.post(OutboundMessage("memory", "elsewhere", "not ours"))
        assert await outbound.catch_up(outbound.delivers) == 0 and channel.visible(CHAT) == []
        # This node takes the chat over: it resumes what waits, in order, once each.
        assert await outbound.resume(lambda name, chat: chat == CHAT) == 1
        await outbound.post(OutboundMessage("memory", CHAT, "two"))  # recorded meanwhile
        owned.add(CHAT)
        assert await outbound.catch_up(outbound.delivers) == 1  # "one" is known already
        await outbound.post(OutboundMessage("memory", CHAT, "three"))
        assert await outbound.drain(5)
        assert channel.visible(CHAT) == ["one", "two", "three"]
        # It gives the chat up while a reply is in flight: the lane stops, the reply stays.
        channel.hold[CHAT] = asyncio.Event()
        four = await outbound.post(OutboundMessage("memory", CHAT, "four"))
        await asyncio.wait_for(channel.gated.wait(), 5)
        owned.clear()
        assert await outbound.release(lambda name, chat: chat == CHAT) == 1
        with pytest.raises(Superseded):
            await four
        pending = [p.message.text for p in await RedisOutbox(redis).pending()]
        assert pending == ["not ours", "four"]
    finally:
        await outbound.aclose()


async def test_delivery_follows_the_partitions_this_node_holds(redis: Redis) -> None:
    text = "\n\n".join(f"Paragraph {i} " + "x" * 60 for i in range(3))  # 3 chunks of <=100
    reply = OutboundMessage("memory", CHAT, text)
    elsewhere = RedisOutbox(redis)  # the node that died, one chunk into the reply
    await elsewhere.add(reply)
    await elsewhere.chunk_sent(reply, 0, "sent-before")
    streams = InboundStreams(redis, "a", ttl=5)
    await streams.setup()
    delivery = PartitionDelivery(streams, is_local=lambda name: False)
    channel = MemoryChannel()
    box = RedisOutbox(redis, fence=lambda p: streams.leases[p].fence)
    outbound = Outbound({"memory": channel}, outbox=box, delivers=delivery.delivers)
    delivery.outbound = outbound
    try:
        assert not delivery.delivers("memory", CHAT)
        await streams.maintain(["a"])  # the only live node: it takes every partition
        await delivery.follow()
        assert delivery.delivers("memory", CHAT)
        assert await outbound.drain(5)
        assert [t.split()[1] for t in channel.visible(CHAT)] == ["1", "2"]  # the rest, once
        assert await box.pending() == []
        # Another node holds the partition now: this one stops delivering to the chat.
        await redis.delete(streams.leases[P].key)
        assert await Lease(redis, f"partition:{P}", "b", 5).try_acquire()
        await streams.maintain(["a"])
        await delivery.follow()
        assert not delivery.delivers("memory", CHAT)
        assert await outbound.deliver(OutboundMessage("memory", CHAT, "later")) == []
        assert [p.message.text for p in await box.pending()] == ["later"]  # left to "b"
    finally:
        await outbound.aclose()


class PausedSnapshot(RedisOutbox):
    """Its `pause_at`-th `pending_chats()` reads the outbox, then waits for `go` before
    answering: a reply recorded meanwhile is missing from what it answers."""

    def __init__(self, redis: Redis, pause_at: int, **kwargs: Any) -> None:
        super().__init__(redis, **kwargs)
        self.calls, self.pause_at = 0, pause_at
        self.read, self.go = asyncio.Event(), asyncio.Event()

    async def pending_chats(self) -> list[tuple[str, str, int]]:
        found = await super().pending_chats()
        self.calls += 1
        if self.calls == self.pause_at:
            self.read.set()
            await self.go.wait()
        return found


async def test_a_reply_recorded_while_the_partition_is_resumed_goes_before_newer_ones(
    redis: Redis,
) -> None:
    streams = InboundStreams(redis, "a", ttl=5)
    await streams.setup()
    await streams.maintain(["a"])  # the only live node: it takes every partition
    delivery = PartitionDelivery(streams, is_local=lambda name: False)
    channel = MemoryChannel()
    # follow() reads each partition's pending replies in order: pause in partition P's read.
    box = PausedSnapshot(redis, P + 1, fence=lambda p: streams.leases[p].fence)
    outbound = Outbound({"memory": channel}, outbox=box, delivers=delivery.delivers)
    delivery.outbound = outbound
    try:
        follow = asyncio.create_task(delivery.follow())
        await asyncio.wait_for(box.read.wait(), 5)
        # A turn's reply, recorded after the read, while the chat's partition is resumed.
        await outbound.post(OutboundMessage("memory", CHAT, "older"))
        box.go.set()
        await outbound.post(OutboundMessage("memory", CHAT, "newer"))  # the next turn's
        await asyncio.wait_for(follow, 5)
        await delivery.follow()  # the next round
        assert await outbound.drain(5)
        assert channel.visible(CHAT) == ["older", "newer"]
        assert await box.pending() == []
    finally:
        await outbound.aclose()
