"""Fixtures for cluster tests: a clean database per test on the session's redis-server
(`redis_server`, tests/conftest.py), or a server of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from channels.discord_channel import DiscordChannel
from picobot.cluster import connect
from tests.cluster.redis_server import RedisServer, server_in
from tests.fakes.fake_discord import FakeDiscord

DM, ALICE = 30, 3000  # the Discord fake's direct-message channel and its user


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


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """The Discord fake with one direct-message channel (DM, with ALICE), patched in."""
    monkeypatch.setattr(DiscordChannel, "guild_ready_timeout", 0.05)
    monkeypatch.setattr(DiscordChannel, "identify_delay", 0.0)
    async with FakeDiscord() as fake:
        fake.add_dm(DM, ALICE, "alice")
        with fake.patch_discord():
            yield fake
