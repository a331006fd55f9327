"""Fixtures for cluster tests: a clean database per test on the session's redis-server
(`redis_server`, tests/conftest.py), or a server of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from picobot.cluster import connect
from tests.cluster.redis_server import RedisServer, server_in


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, which the test may stop and start again."""
    with server_in(tmp_path / "redis") as server:
        yield server
