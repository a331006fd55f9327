"""ClusterNode's intake side: only the lease holder queues what it polled (fenced)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from picobot.cluster.lease import Lease
from picobot.cluster.partitions import partition_of, stream_key
from picobot.config import ClusterConfig
from picobot.core.errors import BusClosed
from picobot.core.messages import InboundMessage, Sender
from picobot.runtime.cluster import ClusterNode
from tests.cluster.redis_server import RedisServer


@pytest.fixture
async def node(redis_server: RedisServer, redis: Redis) -> AsyncIterator[ClusterNode]:
    config = ClusterConfig(redis_url=redis_server.url, node="a", failover_seconds=5)
    cluster = ClusterNode(config, default_node="1")
    await cluster.streams.setup()
    try:
        yield cluster
    finally:
        await cluster.redis.aclose()


async def test_only_the_lease_holder_queues_what_it_polled(node: ClusterNode, redis: Redis) -> None:
    msg = InboundMessage("telegram", "42", Sender("u"), "hi", id="telegram:1")
    stream = stream_key(partition_of("telegram", "42"))
    lease = node.leases["telegram"] = Lease(node.redis, "telegram", "a", 5)
    assert not await node.seen(msg)
    with pytest.raises(BusClosed, match="no longer holds"):
        await node.publish(msg)
    assert not await node.seen(msg)  # not taken: its redelivery is not a replay
    assert await lease.try_acquire()
    await node.publish(msg)
    assert await redis.xlen(stream) == 1
    # Another node takes the lease (this one was paused past its TTL): the write is fenced.
    await redis.delete(lease.key)
    assert await Lease(redis, "telegram", "b", 5).try_acquire()
    with pytest.raises(BusClosed, match="could not queue"):
        await node.publish(InboundMessage("telegram", "42", Sender("u"), "late", id="telegram:2"))
    assert await redis.xlen(stream) == 1 and not lease.held
    assert await lease.holder() == "b"  # giving up did not touch the new holder's lease


async def test_status_names_nodes_leases_and_partitions(node: ClusterNode) -> None:
    node.leases["telegram"] = Lease(node.redis, "telegram", "a", 5)
    assert await node.leases["telegram"].try_acquire()
    await node._round()  # one upkeep round: heartbeat, partitions
    view = await node.status()
    assert view["ready"] and view["redis"] == "ok" and view["node"] == "a"
    assert list(view["nodes"]) == ["a"]
    assert view["leases"] == {"telegram": "a"}
    assert set(view["partitions"].values()) == {"a"}
    assert node.checks() == {"cluster": "ok"}
