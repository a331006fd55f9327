"""Session history in Redis: the same behaviour as the SQLite store."""

from __future__ import annotations

from redis.asyncio import Redis

from picobot.cluster import connect
from picobot.cluster.sessions import RedisSessionStore


async def test_history_notes_titles_and_pruning(redis: Redis) -> None:
    store = RedisSessionStore(redis)
    turn1 = [
        {"role": "user", "content": "Hello there\nmore"},
        {"role": "assistant", "content": "hi"},
    ]
    await store.append("t:1", turn1, keep=10)
    await store.append_note("t:1", [{"role": "user", "content": "/help"}])
    turn2 = [{"role": "user", "content": "again"}, {"role": "assistant", "content": "yes"}]
    await store.append("t:1", turn2, keep=10)
    assert await store.load("t:1") == turn1 + turn2  # the model never sees notes
    assert [m["content"] for m in await store.transcript("t:1")][2] == "/help"
    assert await store.count("t:1") == 4
    await store.append("t:1", [{"role": "user", "content": "third"}], keep=2)
    assert [m["content"] for m in await store.load("t:1")] == ["third"]  # a turn boundary
    [info] = await store.sessions("t:")
    assert info.key == "t:1" and info.title == "Hello there"
    assert await store.rename("t:1", "Renamed")
    assert not await store.rename("t:2", "x")
    assert [s.title for s in await store.sessions()] == ["Renamed"]
    await store.clear("t:1")
    assert await store.load("t:1") == [] and await store.sessions() == []


async def test_another_client_sees_the_same_history(redis: Redis) -> None:
    await RedisSessionStore(redis).append("t:9", [{"role": "user", "content": "x"}])
    pool = redis.connection_pool.connection_kwargs
    other = connect(f"redis://{pool['host']}:{pool['port']}/0")
    try:
        assert await RedisSessionStore(other).load("t:9") == [{"role": "user", "content": "x"}]
    finally:
        await other.aclose()
