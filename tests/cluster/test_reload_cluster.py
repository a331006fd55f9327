"""A reload (SIGHUP) in cluster mode: a restarted channel's connection goes through the lease.

The daemon runs in cluster mode against a real redis-server, with Discord (the real discord.py
against the fake). The old channel hands its lease over before it stops, the new one takes it
once logged in; a channel the reload disables releases its lease.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from picobot.agent.demo import DemoLLM
from picobot.config import Config, parse_config
from picobot.runtime.daemon import Daemon
from tests.cluster.conftest import DM
from tests.cluster.redis_server import RedisServer
from tests.fakes.fake_discord import FakeDiscord

LEASE = "picobot:lease:discord"
TIMEOUT = 10.0


def config(tmp_path: Path, redis: RedisServer, fake: FakeDiscord, **discord: Any) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"port": 0},
            "dispatch": {"drain_timeout": 2.0},
            "cluster": {"redis_url": redis.url, "node": "a", "failover_seconds": 10},
            "channels": {
                "web": {"enabled": False},
                "discord": {"enabled": True, "token": fake.token, "allow_from": ["*"], **discord},
            },
        },
        env={},
    )


def identifies(fake: FakeDiscord) -> int:
    return sum(1 for frame in fake.gateway_received if frame["op"] == 2)


def answered(fake: FakeDiscord, said: str) -> bool:
    return any(said in m.content and m.edits for m in fake.channel_log(DM))


async def test_a_reloaded_channel_takes_the_gateway_under_the_lease(
    tmp_path: Path, redis_server: RedisServer, redis: Redis, discord_fake: FakeDiscord
) -> None:
    fake = discord_fake
    async with Daemon(config(tmp_path, redis_server, fake), llm=DemoLLM(delay=0)) as daemon:
        await fake.wait_for(lambda: fake.live_sessions == 1, TIMEOUT)
        old = daemon.channels["discord"]
        assert await redis.get(LEASE) == "a 1"

        # A change that restarts the channel: the old one hands the lease over, the new one
        # takes it (a new gateway session), never both at once.
        changed = config(tmp_path, redis_server, fake, allow_channels=["21"])
        assert await daemon.reload(changed) == ["discord: restarted"]
        await fake.wait_for(lambda: identifies(fake) == 2 and fake.live_sessions == 1, TIMEOUT)
        assert daemon.channels["discord"] is not old and fake.peak_sessions == 1
        assert await redis.get(LEASE) == "a 2"
        await fake.user_message(DM, "after the reload")
        await fake.wait_for(lambda: answered(fake, "after the reload"), TIMEOUT)

        # Disabled: the gateway closes and the lease is released (another node may take it).
        disabled = config(tmp_path, redis_server, fake, enabled=False)
        assert await daemon.reload(disabled) == ["discord: stopped"]
        assert fake.live_sessions == 0 and not await redis.exists(LEASE)
        view = await daemon.status()
        assert "discord" not in view["cluster"]["leases"]  # type: ignore[index]
