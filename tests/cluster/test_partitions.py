"""Inbound streams partitioned by conversation: order, ownership, hand-over and reclaim."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from picobot.cluster.lease import Lease
from picobot.cluster.partitions import (
    PARTITIONS,
    Entry,
    InboundStreams,
    consume,
    partition_of,
    stream_key,
    wished,
)
from picobot.core.messages import InboundMessage, Sender


def message(chat: str, text: str) -> InboundMessage:
    return InboundMessage("telegram", chat, Sender("u"), text, id=f"{chat}-{text}")


async def streams(redis: Redis, node: str, ttl: float = 10) -> InboundStreams:
    s = InboundStreams(redis, node, ttl=ttl)
    await s.setup()
    return s


async def read_all(s: InboundStreams) -> list[Entry]:
    found: list[Entry] = []
    while batch := await s.read(0.05):
        for entry in batch:
            s.taken(entry)
        found += batch
    return found


def test_a_chat_always_maps_to_one_partition_and_chats_spread() -> None:
    assert partition_of("telegram", "42") == partition_of("telegram", "42")
    spread = {partition_of("telegram", str(chat)) for chat in range(200)}
    assert len(spread) == PARTITIONS


def test_rendezvous_splits_the_partitions_and_moves_few_on_a_join() -> None:
    two = {n: wished(["a", "b"], n) for n in "ab"}
    assert two["a"] | two["b"] == set(range(PARTITIONS)) and not two["a"] & two["b"]
    three = {n: wished(["a", "b", "c"], n) for n in "abc"}
    assert set().union(*three.values()) == set(range(PARTITIONS))
    assert three["a"] <= two["a"] and three["b"] <= two["b"]  # only moves to the newcomer
    assert wished([], "a") == set(range(PARTITIONS))


async def test_one_node_reads_each_chat_in_order(redis: Redis) -> None:
    s = await streams(redis, "a")
    await s.maintain(["a"])
    assert s.owned == set(range(PARTITIONS))
    for i in range(5):
        await s.publish(message("1", f"m{i}"))
        await s.publish(message("2", f"m{i}"))
    entries = await read_all(s)
    for chat in ("1", "2"):
        texts = [e.message.text for e in entries if e.message.chat_id == chat]
        assert texts == [f"m{i}" for i in range(5)]
    assert await s.backlog() == 10
    assert await s.done("1-m0")
    assert not await s.done("1-m0")  # once
    assert await s.backlog() == 9


async def test_two_nodes_share_the_partitions(redis: Redis) -> None:
    a, b = await streams(redis, "a"), await streams(redis, "b")
    await a.maintain(["a", "b"])
    await b.maintain(["a", "b"])
    assert a.owned | b.owned == set(range(PARTITIONS)) and not a.owned & b.owned
    owners = await a.owners()
    assert {p for p, n in owners.items() if n == "b"} == b.owned


async def test_a_dead_nodes_unfinished_work_moves_to_another(redis: Redis) -> None:
    a, b = await streams(redis, "a", ttl=10), await streams(redis, "b", ttl=10)
    await a.maintain(["a"])
    for i in range(3):
        await a.publish(message("7", f"m{i}"))
    first = await read_all(a)
    assert [e.message.text for e in first] == ["m0", "m1", "m2"]
    assert await a.done("7-m0")
    # `a` dies: its partition leases run out.
    await redis.delete(*(lease.key for lease in a.leases.values()))
    await a.publish(message("7", "m3"))
    await b.maintain(["b"])
    assert b.owned == set(range(PARTITIONS))
    again = await read_all(b)
    assert [e.message.text for e in again] == ["m1", "m2", "m3"]  # unfinished first, in order
    assert not await a.done("7-m1")  # fenced: `a` no longer holds the partition
    assert await b.done("7-m1")


async def test_a_node_hands_over_a_partition_only_when_its_work_is_done(redis: Redis) -> None:
    a, b = await streams(redis, "a"), await streams(redis, "b")
    await a.maintain(["a"])
    moving = sorted(wished(["a", "b"], "b"))
    chat = next(str(c) for c in range(1000) if partition_of("telegram", str(c)) == moving[0])
    await a.publish(message(chat, "busy"))
    assert [e.message.text for e in await read_all(a)] == ["busy"]
    await a.maintain(["a", "b"])  # b joined
    assert moving[0] in a.owned and set(moving[1:]).isdisjoint(a.owned)
    await b.maintain(["a", "b"])
    assert moving[0] not in b.owned
    assert await a.done(f"{chat}-busy")
    await a.maintain(["a", "b"])
    await b.maintain(["a", "b"])
    assert b.owned == set(moving) and a.owned.isdisjoint(b.owned)


async def test_a_partition_is_handed_over_only_once_no_read_of_it_is_in_flight(
    redis: Redis,
) -> None:
    """A read in flight when the partition moved would take the next entry after the new
    owner claimed the partition: it would reach the new owner after newer ones."""
    a, b = await streams(redis, "a"), await streams(redis, "b")
    await a.maintain(["a"])
    await read_all(a)
    p = sorted(wished(["a", "b"], "b"))[0]
    chat = next(str(c) for c in range(1000) if partition_of("telegram", str(c)) == p)
    reading = asyncio.create_task(a.read(5))
    for _ in range(500):  # until the read blocks in Redis, waiting for entries
        if any("b" in client["flags"] for client in await redis.client_list()):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the read never blocked")
    await a.maintain(["a", "b"])  # b joined while the read was in flight
    await b.maintain(["a", "b"])
    assert p in a.owned and p not in b.owned
    await b.publish(message(chat, "first"))
    [entry] = await asyncio.wait_for(reading, 5)
    assert entry.message.text == "first" and p in a.owned  # a's to handle
    a.taken(entry)
    assert await a.done(entry.message.id)
    await a.maintain(["a", "b"])
    await b.maintain(["a", "b"])
    assert p in b.owned and p not in a.owned
    await b.publish(message(chat, "second"))
    assert [e.message.text for e in await read_all(b)] == ["second"]


async def test_a_partition_whose_lease_is_lost_is_dropped_at_once(redis: Redis) -> None:
    a = await streams(redis, "a")
    await a.maintain(["a"])
    lease = a.leases[3]
    await redis.set(lease.key, "b 999")
    await a.maintain(["a"])
    assert 3 not in a.owned


async def test_a_turn_not_done_is_read_again(redis: Redis) -> None:
    a = await streams(redis, "a")
    await a.maintain(["a"])
    await a.publish(message("7", "m0"))
    [entry] = await read_all(a)
    a.again("7-m0")  # its reply could not be recorded
    [again] = await read_all(a)
    assert again.id == entry.id and not again.pending  # never finished: not maybe-answered
    assert await a.done("7-m0")
    assert await read_all(a) == []


async def test_a_turn_from_before_the_partition_was_lost_is_not_acked(redis: Redis) -> None:
    a = await streams(redis, "a")
    await a.maintain(["a"])
    p = partition_of("telegram", "7")
    await a.publish(message("7", "m0"))
    [entry] = await read_all(a)
    # The lease runs out while the turn runs (a pause); `a` takes the partition back.
    await redis.delete(a.leases[p].key)
    await a.maintain(["a"])
    await a.maintain(["a"])
    assert p in a.owned and a.turn_fence("7-m0") != a.leases[p].fence
    assert await read_all(a) == []  # still in flight here: not handed out twice
    assert not await a.done("7-m0")  # the turn started under the old lease: run again
    [again] = await read_all(a)
    assert again.id == entry.id
    assert await a.done("7-m0")


async def test_a_stale_fence_cannot_publish(redis: Redis) -> None:
    s = await streams(redis, "a")
    old, new = Lease(redis, "telegram", "a", 10), Lease(redis, "telegram", "b", 10)
    assert await old.try_acquire()
    stale = old.fence
    await redis.delete(old.key)
    assert await new.try_acquire()
    with pytest.raises(ResponseError, match="FENCED"):
        await s.publish(message("1", "late"), stale)
    await s.publish(message("1", "fresh"), new.fence)
    await s.maintain(["a"])
    assert [e.message.text for e in await read_all(s)] == ["fresh"]


async def test_an_unreadable_entry_is_dropped(redis: Redis) -> None:
    s = await streams(redis, "a")
    await s.maintain(["a"])
    await redis.xadd(stream_key(0), {"m": "not json"})
    await redis.xadd(stream_key(0), {"m": '{"channel": "x"}'})
    assert await read_all(s) == []
    assert await s.backlog() == 0


async def test_consume_hands_entries_over_until_cancelled(redis: Redis) -> None:
    s = await streams(redis, "a")
    await s.maintain(["a"])
    got: asyncio.Queue[Entry] = asyncio.Queue()

    async def handle(entry: Entry) -> None:
        await got.put(entry)

    task = asyncio.create_task(consume(s, handle, block=0.1))
    try:
        await s.publish(message("1", "hello"))
        entry = await asyncio.wait_for(got.get(), 5)
        assert entry.message.text == "hello"
        assert await s.done(entry.message.id)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def test_an_entry_read_by_the_previous_owner_is_adopted(redis: Redis) -> None:
    b = await streams(redis, "b")
    await b.maintain(["b"])
    await b.publish(message("5", "stray"))
    # `a` had a read in flight while the partition moved to `b`: the entry went to `a`.
    p = partition_of("telegram", "5")
    got = await redis.xreadgroup("picobot", "a", {stream_key(p): ">"})
    assert got and not await read_all(b)
    await b.maintain(["b"])
    assert [e.message.text for e in await read_all(b)] == ["stray"]
