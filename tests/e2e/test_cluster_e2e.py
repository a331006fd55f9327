"""Three `picobot run` processes, one bot: a real redis-server and the Telegram fake.

Everything waits on log lines or on what the fake saw, with timeouts; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

from picobot.cluster import connect
from picobot.cluster.partitions import InboundStreams, partition_of
from tests.cluster.redis_server import RedisServer, server_in
from tests.e2e.harness import Picobot, push_burst, replies, status
from tests.fakes.fake_telegram import FakeTelegram

FAILOVER = 3.0  # seconds: short, so the suite stays fast
NODES = ("n1", "n2", "n3")
BURST_CHATS = list(range(1001, 1031))  # 30 chats


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with server_in(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as telegram:
        yield telegram


def node_config(tmp: Path, fake: FakeTelegram, redis: RedisServer, node: str) -> Path:
    config = fake.picobot_config(
        tmp / node / "data",
        inbound_rate=1000,
        placeholder={"enabled": False},
        streaming={"enabled": False},
    )
    config |= {
        "llm": {"provider": "demo"},
        "agent": {"max_parallel_turns": 8},
        "dispatch": {"max_backoff": 1, "drain_timeout": 5},
        "cluster": {"redis_url": redis.url, "node": node, "failover_seconds": FAILOVER},
    }
    path = tmp / f"{node}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, fake: FakeTelegram, redis: RedisServer, demo_delay: str = "0.005"
) -> AsyncIterator[dict[str, Picobot]]:
    bots = {n: Picobot(node_config(tmp, fake, redis, n), demo_delay) for n in NODES}
    try:
        for bot in bots.values():
            await bot.start()
        for bot in bots.values():
            await bot.ready()
        yield bots
    finally:
        for bot in bots.values():
            if bot.proc is not None and bot.proc.returncode is None:
                await bot.stop(signal.SIGKILL)


async def poller(bots: dict[str, Picobot], other_than: str = "") -> str:
    """The node (other than `other_than`) that logs taking the Telegram lease."""
    tasks = {
        asyncio.create_task(bot.wait_line(r"lease telegram: held by this node"), name=name)
        for name, bot in bots.items()
        if name != other_than
    }
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = next(iter(done))
    task.result()  # raises if the node exited instead
    return task.get_name()


def log_tails(bots: dict[str, Picobot]) -> str:
    """Each node's partition and lease changes, then its last lines: what a failure needs."""
    parts = []
    for name, bot in bots.items():
        moves = [line for line in bot.lines if re.search(r"partition|lease|cluster:", line)]
        parts.append(f"{name}:\n" + "\n".join(moves[-40:]) + f"\n...\n{bot.log_tail(15)}")
    return "\n\n".join(parts)


def answered(fake: FakeTelegram, last: int) -> bool:
    """Every burst chat's message number `last` has its reply (earlier ones may be answered
    together with it: steering)."""
    got = {t for chat in BURST_CHATS for t in replies(fake, chat)}
    return {f"ping-{chat}-{last:03d}" for chat in BURST_CHATS} <= got


async def test_three_nodes_answer_a_burst_and_survive_the_pollers_death(
    tmp_path: Path, fake: FakeTelegram, redis_server: RedisServer
) -> None:
    async with cluster(tmp_path, fake, redis_server) as bots:
        holder = await poller(bots)
        push_burst(fake, BURST_CHATS, 2)
        # Mid-burst: the first replies are out, the rest are not.
        await fake.wait_for(lambda f: any(replies(f, c) for c in BURST_CHATS), 30)
        await bots[holder].stop(signal.SIGKILL)
        successor = await asyncio.wait_for(poller(bots, other_than=holder), FAILOVER * 5)
        assert successor != holder
        for i in (2, 3):
            for chat in BURST_CHATS:
                fake.user_message(chat, f"ping-{chat}-{i:03d}")
        try:
            await fake.wait_for(lambda f: answered(f, 3), 60)
        except TimeoutError:
            raise AssertionError(f"not all answered\n{log_tails(bots)}") from None
        for chat in BURST_CHATS:
            got = replies(fake, chat)
            if got != sorted(got):
                print(log_tails(bots))  # shown whole with the failure (its message is cut)
            assert got == sorted(got), (chat, got)  # in order per chat
            assert got[-1] == f"ping-{chat}-003"
            assert len(got) - len(set(got)) <= 1, (chat, got)  # a duplicate only in flight
        assert fake.rate_limited == []  # no 429 across the three nodes together
        assert fake.overlapping_polls == 0  # never two pollers at once
        for name, bot in bots.items():
            if name != holder:
                assert await bot.stop() == 0


async def test_a_conversation_moves_with_its_history_and_stop_reaches_the_turn(
    tmp_path: Path, fake: FakeTelegram, redis_server: RedisServer
) -> None:
    redis = connect(redis_server.url)
    try:
        async with cluster(tmp_path, fake, redis_server, demo_delay="0.1") as bots:
            holder = await poller(bots)
            # A chat whose partition another node owns: its turns run away from the poller.
            owners = await wait_spread(redis, set(NODES))
            chat = next(
                c
                for c in range(2000, 3000)
                if owners[partition_of("telegram", str(c))] not in (None, holder)
            )
            owner = owners[partition_of("telegram", str(chat))]
            fake.user_message(chat, "first")
            await fake.wait_for(lambda f: any("first" in m.text for m in f.chat_log(chat)), 30)
            # /stop sent while a turn runs on `owner` (the poller is another node) stops it.
            typing = sum(1 for a in fake.chat_actions if a.chat_id == chat)
            fake.user_message(chat, "long")
            await fake.wait_for(
                lambda f: sum(1 for a in f.chat_actions if a.chat_id == chat) > typing, 30
            )
            fake.user_message(chat, "/stop")
            await fake.wait_for(lambda f: any(m.text == "Stopped." for m in f.chat_log(chat)), 30)
            log = [m.text[:80] for m in fake.chat_log(chat)]
            assert not any("said:\n\nlong" in m.text for m in fake.chat_log(chat)), log  # cut
            # The owner leaves; the conversation goes on elsewhere, with its history.
            assert owner is not None
            assert await bots[owner].stop() == 0
            fake.user_message(chat, "again")
            await fake.wait_for(lambda f: any("again" in m.text for m in f.chat_log(chat)), 30)
            history = [
                json.loads(item)
                for item in await redis.lrange(f"picobot:history:telegram:{chat}", 0, -1)
            ]
            said = [m["content"] for m in history if m["role"] == "user"]
            assert said[0] == "first" and said[-1] == "again"
            assert fake.overlapping_polls == 0
    finally:
        await redis.aclose()


async def wait_spread(redis: Redis, nodes: set[str]) -> dict[int, str | None]:
    """Partition owners, once every node owns some (the spread after the nodes joined)."""
    streams = InboundStreams(redis, "observer", ttl=1)
    async with asyncio.timeout(30):
        while True:
            owners = await streams.owners()
            if set(owners.values()) == nodes:
                return owners
            await asyncio.sleep(0.2)  # polling Redis for a state, bounded by the timeout


async def readyz(port: int) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, await response.json()


async def wait_ready(port: int, status: int, timeout: float) -> dict[str, object]:
    """/readyz answers `status` within `timeout` s (asked every 0.2 s)."""
    async with asyncio.timeout(timeout):
        while True:
            code, body = await readyz(port)
            if code == status:
                return body
            await asyncio.sleep(0.2)  # polling an HTTP endpoint, bounded by the timeout


async def test_redis_down_means_not_ready_then_ready_again_without_exiting(
    tmp_path: Path, fake: FakeTelegram, redis_server: RedisServer
) -> None:
    bot = Picobot(node_config(tmp_path, fake, redis_server, "solo"), "0.005")
    await bot.start()
    try:
        port = await bot.ready()
        await bot.wait_line(r"lease telegram: held by this node")
        await wait_ready(port, 200, 10)
        out = await status(tmp_path, port)  # `picobot status` prints the cluster object
        assert "cluster: node solo, redis ok" in out
        assert "telegram connection held by solo" in out
        assert re.search(r"node solo at 127\.0\.0\.1:\d+: partitions 0, 1, 2", out), out
        redis_server.stop()
        body = await wait_ready(port, 503, 10)
        assert body["failing"] == ["cluster"]
        assert bot.proc is not None and bot.proc.returncode is None  # no exit, no crash loop
        redis_server.start()
        try:
            await wait_ready(port, 200, 20)
        except TimeoutError:
            raise AssertionError(f"{await readyz(port)}\n{bot.log_tail()}") from None
        fake.user_message(4242, "after the outage")
        await fake.wait_for(
            lambda f: any("after the outage" in m.text for m in f.chat_log(4242)), 30
        )
        assert await bot.stop() == 0
    finally:
        if bot.proc is not None and bot.proc.returncode is None:
            await bot.stop(signal.SIGKILL)
