"""Reminders in cluster mode, end to end: two `picobot run` nodes, a real redis-server, the
Telegram fake and the fake OpenAI server (which scripts the model's `schedule` call).

The node firing reminders (the `scheduler` lease holder) is SIGKILLed before the reminder is
due: the other node takes the lease over and the reminder arrives exactly once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from picobot.cluster import connect
from tests.cluster.redis_server import RedisServer, server_in
from tests.e2e.harness import TIMEOUT, Picobot, status
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.fakes.fake_telegram import FakeTelegram

FAILOVER = 3.0
NODES = ("n1", "n2")
CHAT = 701
HELD = r"lease scheduler: held by this node"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with server_in(tmp_path / "redis") as server:
        yield server


def node_config(
    tmp: Path, tg: FakeTelegram, llm: FakeOpenAI, redis: RedisServer, node: str
) -> Path:
    config = tg.picobot_config(tmp / node / "data", placeholder={"enabled": False})
    config |= {
        "llm": {
            "provider": "openai",
            "base_url": llm.base_url,
            "api_key": "sk-test",
            "model": "fake-model",
            "max_retries": 0,
        },
        "agent": {"tools": ["time", "message", "schedule"]},
        "dispatch": {"max_backoff": 1, "drain_timeout": 5},
        "cluster": {"redis_url": redis.url, "node": node, "failover_seconds": FAILOVER},
    }
    path = tmp / f"{node}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def scheduler_holder(bots: dict[str, Picobot]) -> str:
    """The node that logs taking the `scheduler` lease (the first to do so)."""
    tasks = {asyncio.create_task(bot.wait_line(HELD), name=name) for name, bot in bots.items()}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = next(iter(done))
    task.result()
    return task.get_name()


def texts(tg: FakeTelegram) -> list[str]:
    return [m.text for m in tg.chat_log(CHAT)]


async def test_a_reminder_fires_once_after_the_firing_node_is_killed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with FakeTelegram() as tg, FakeOpenAI() as llm:
        llm.script(
            Reply(tool_calls=[ToolCall("schedule", {"text": "drink water", "in_seconds": 5})]),
            Reply(text="Reminder set."),
        )
        bots = {n: Picobot(node_config(tmp_path, tg, llm, redis_server, n)) for n in NODES}
        try:
            for bot in bots.values():
                await bot.start()
            ports = {name: await bot.ready() for name, bot in bots.items()}
            holder = await scheduler_holder(bots)
            (other,) = set(NODES) - {holder}
            assert f"reminders fired by {holder}" in await status(tmp_path, ports[other])
            tg.user_message(CHAT, "remind me to drink water in 5 seconds")
            await tg.wait_for(lambda f: "Reminder set." in texts(f), TIMEOUT)
            assert await bots[holder].stop(signal.SIGKILL) == -signal.SIGKILL
            await bots[other].wait_line(HELD, FAILOVER * 5)
            await tg.wait_for(lambda f: "⏰ drink water" in texts(f), TIMEOUT)
            await bots[other].wait_line(r"schedule: entry #1 fired in telegram")  # there
            assert await bots[other].stop() == 0  # drained: anything else would be out now
            assert texts(tg).count("⏰ drink water") == 1, texts(tg)
            redis = connect(redis_server.url)
            try:
                assert await redis.hlen("picobot:schedule:entries") == 0  # type: ignore[misc]
            finally:
                await redis.aclose()
        finally:
            for bot in bots.values():
                if bot.proc is not None and bot.proc.returncode is None:
                    await bot.stop(signal.SIGKILL)
