"""The node registry and cluster-wide de-duplication."""

from __future__ import annotations

from redis.asyncio import Redis

from picobot.cluster.dedup import SeenEvents
from picobot.cluster.nodes import NodeRegistry


async def test_live_nodes_are_those_with_a_heartbeat(redis: Redis) -> None:
    a, b = NodeRegistry(redis, "a", 10), NodeRegistry(redis, "b", 10)
    await a.beat({"http": "127.0.0.1:1"})
    await b.beat({"http": "127.0.0.1:2"})
    assert await a.live() == {"a": {"http": "127.0.0.1:1"}, "b": {"http": "127.0.0.1:2"}}
    assert 0 < await redis.pttl("picobot:node:a") <= 10_000
    await b.leave()
    assert list(await a.live()) == ["a"]


async def test_an_expired_heartbeat_is_not_live(redis: Redis) -> None:
    a, b = NodeRegistry(redis, "a", 10), NodeRegistry(redis, "b", 10)
    await a.beat({})
    await b.beat({})
    await redis.delete("picobot:node:b")  # as when its TTL runs out
    assert list(await a.live()) == ["a"]
    assert await redis.smembers("picobot:nodes") == {"a"}


async def test_an_event_is_handled_once_cluster_wide(redis: Redis) -> None:
    seen = SeenEvents(redis)
    assert not await seen.seen("telegram:1")
    assert await seen.seen("telegram:1")
    assert not await seen.seen("telegram:2")
    assert await redis.pttl("picobot:seen:telegram:1") > 6 * 24 * 3600 * 1000
    await seen.forget("telegram:1")
    assert not await seen.seen("telegram:1")
