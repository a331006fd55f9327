"""The shared outbox across a node's death: two `picobot run` processes, a real redis-server
and the Telegram fake. A reply waiting out a flood wait on the node that dies is finished by
the node that takes its partition over — the remaining chunks once each, the placeholder the
dead node showed edited into the reply, the turn not run again — and a dead letter shows in
every node's status.

Everything waits on log lines or on what the fake saw, with timeouts; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis

from picobot.cluster import connect
from picobot.cluster.partitions import PARTITIONS, InboundStreams, partition_of, wished
from tests.cluster.redis_server import RedisServer, server_in
from tests.e2e.harness import Picobot, status
from tests.e2e.test_cluster_e2e import node_config
from tests.fakes.fake_telegram import FakeTelegram
from tests.fakes.telegram_rules import ManualClock

NODES = ("n1", "n2")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with server_in(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()  # the fake's flood waits last until the test moves this on


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock, enforce_limits=False) as telegram:
        yield telegram


async def wait_owners(redis: Redis, expected: dict[int, str]) -> None:
    """Until the partitions' owners are `expected` (the spread the live nodes settle on)."""
    streams = InboundStreams(redis, "observer", ttl=1)
    async with asyncio.timeout(30):
        while True:
            if await streams.owners() == expected:
                return
            await asyncio.sleep(0.2)  # polling Redis for a state, bounded by the timeout


def config(tmp: Path, fake: FakeTelegram, redis: RedisServer, node: str, placeholder: bool) -> Path:
    path = node_config(tmp, fake, redis, node)
    data = yaml.safe_load(path.read_text())
    data["channels"]["telegram"]["placeholder"] = {"enabled": placeholder, "text": "Thinking…"}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("placeholder", "stop"),
    [(False, signal.SIGKILL), (True, signal.SIGKILL), (False, signal.SIGTERM)],
    ids=["killed", "killed-placeholder", "terminated"],
)
async def test_a_dead_nodes_pending_reply_is_finished_by_the_partitions_next_owner(
    tmp_path: Path,
    fake: FakeTelegram,
    clock: ManualClock,
    redis_server: RedisServer,
    placeholder: bool,
    stop: signal.Signals,
) -> None:
    bots = {
        n: Picobot(config(tmp_path, fake, redis_server, n, placeholder), "0.001") for n in NODES
    }
    redis = connect(redis_server.url)
    try:
        for bot in bots.values():
            await bot.start()
        ports = {name: await bot.ready() for name, bot in bots.items()}
        ones = wished(NODES, "n1")
        await wait_owners(redis, {p: "n1" if p in ones else "n2" for p in range(PARTITIONS)})
        # Two chats whose partition n1 owns: its turns and its deliveries run there.
        flooded, blocked = [
            c for c in range(5000, 9000) if partition_of("telegram", str(c)) in ones
        ][:2]
        survivor = bots["n2"]

        # A permanent failure on n1 is a dead letter every node's status shows.
        fake.forbid(blocked)
        fake.user_message(blocked, "hello")
        text = ""
        async with asyncio.timeout(30):
            while f"dead: telegram:{blocked}: Forbidden" not in text:
                text = await status(tmp_path, ports["n2"])

        # n1 sends the first chunk of a long reply (or the placeholder the first chunk is to
        # replace); what comes next meets a flood wait.
        fake.flood_after(flooded, sends=1, seconds=2)
        fake.user_message(flooded, "long")
        await fake.wait_for(
            lambda f: any(
                c.status == 429 and str(flooded) in str(c.params) for c in f.rate_limited
            ),
            30,
        )
        [first] = fake.chat_log(flooded)
        assert (first.text == "Thinking…") is placeholder
        # Killed; or stopped, its drain timing out on the flood wait: it hands the reply over.
        code = await bots["n1"].stop(stop)
        assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL), bots["n1"].log_tail()

        # n2 takes the partition over and resumes the reply where n1 left it.
        p = partition_of("telegram", str(flooded))
        await survivor.wait_line(rf"partition {p}: resuming 1 pending replies", 30)
        if stop == signal.SIGKILL:  # its turn had not ended: claimed, but not run again
            await survivor.wait_line(rf"partition {p}: .* was answered already", 30)
        clock.advance(60)  # the flood wait is over
        await fake.wait_for(lambda f: "end of the long reply" in f.chat_log(flooded)[-1].text, 30)

        # A turn run again would have answered before the next message is answered.
        fake.user_message(flooded, "ping after the failover")
        await fake.wait_for(lambda f: "ping after" in f.chat_log(flooded)[-1].text, 30)
        texts = [m.text for m in fake.chat_log(flooded)][:-1]
        assert len(texts) >= 2  # the first message from n1, the rest from n2
        assert fake.chat_log(flooded)[0].message_id == first.message_id
        assert "Thinking…" not in texts  # n2 edited the placeholder n1 had shown
        assert Counter(texts).most_common(1)[0][1] == 1, texts  # every chunk exactly once
        assert sum("A long reply" in t for t in texts) == 1  # the turn was not run again
        assert await survivor.stop() == 0, survivor.log_tail()
    finally:
        await redis.aclose()
        for bot in bots.values():
            if bot.proc is not None and bot.proc.returncode is None:
                await bot.stop(signal.SIGKILL)
