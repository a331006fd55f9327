"""A turn's reply in cluster mode: acked only once recorded; a reply that could not be recorded
(Redis failed) leaves the turn pending to run again, and a turn that outlived its partition
cannot record a second answer (against a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from picobot.agent.demo import DemoLLM
from picobot.agent.llm import LLMEvent
from picobot.agent.loop import BufferedReply
from picobot.cluster.outbox import RedisOutbox
from picobot.cluster.partitions import GROUP, Entry, partition_of, stream_key
from picobot.config import ClusterConfig, parse_config
from picobot.core import events as ev
from picobot.core.errors import StorageError, Superseded
from picobot.core.messages import InboundMessage, Message, OutboundMessage, Sender
from picobot.outbound.door import Outbound
from picobot.runtime.cluster import ClusterNode
from picobot.runtime.daemon import Daemon
from picobot.storage.journal import FinishedInOutbox
from picobot.storage.routed import RoutedOutbox
from tests.cluster.conftest import DM
from tests.cluster.redis_server import RedisServer
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.memory_channel import MemoryChannel

CHAT = "c"
P = partition_of("memory", CHAT)


class Journal:
    """The SQLite turn journal's calls (`TurnJournal`)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def started(self, inbound_id: str) -> None:
        self.calls.append(("started", inbound_id))

    async def finished(self, inbound_id: str) -> None:
        self.calls.append(("finished", inbound_id))

    async def interrupted(self, inbound_id: str) -> None:
        self.calls.append(("interrupted", inbound_id))


class FlakyOutbox(RedisOutbox):
    """The node's Redis outbox, whose next `fail` records fail as if Redis were unreachable."""

    fail = 0

    async def add(self, msg: OutboundMessage) -> None:
        if self.fail:
            self.fail -= 1
            raise StorageError("cluster outbox: Redis unreachable (test)")
        await super().add(msg)


@pytest.fixture
async def nodes(redis_server: RedisServer, redis: Redis) -> AsyncIterator[list[ClusterNode]]:
    made = []
    for name in ("a", "b"):
        config = ClusterConfig(redis_url=redis_server.url, node=name, failover_seconds=5)
        node = ClusterNode(config, default_node="1")
        await node.streams.setup()
        made.append(node)
    try:
        yield made
    finally:
        for node in made:
            await node.redis.aclose()


def flaky_outbox(node: ClusterNode) -> FlakyOutbox:
    return FlakyOutbox(
        node.redis,
        fence=lambda p: node.streams.leases[p].fence,
        turn_fence=node.streams.turn_fence,
    )


async def take(node: ClusterNode) -> Entry:
    """This node's next entry of the chat's partition, handed to the agent."""
    entries = await node.streams.read(0.1)
    [entry] = [e for e in entries if e.partition == P]
    node.streams.taken(entry)
    return entry


async def run_turn(
    node: ClusterNode, outbound: Outbound, msg: InboundMessage, text: str
) -> Journal:
    """What the agent loop does with a turn's writer, the reply `text`; StorageError from the
    writer is what the loop logs."""
    journal = Journal()
    writer = node.writer(
        FinishedInOutbox(BufferedReply(msg, outbound.post), msg.id, journal), msg.id
    )
    try:
        await writer.feed(ev.TurnStarted("t", msg.session_key))
        await writer.feed(ev.TurnFinished(text))
    except StorageError:
        pass
    await writer.finish()
    return journal


async def pending(redis: Redis, partition: int = P) -> int:
    info = await redis.xpending(stream_key(partition), GROUP)
    return int(info["pending"])


async def test_a_reply_redis_failed_to_record_runs_the_turn_again(
    nodes: list[ClusterNode], redis: Redis
) -> None:
    node = nodes[0]
    await node.streams.maintain(["a"])
    msg = InboundMessage("memory", CHAT, Sender("u"), "hi", id="memory:1")
    await node.streams.publish(msg)
    channel = MemoryChannel()
    box = flaky_outbox(node)
    outbound = Outbound({"memory": channel}, outbox=box)
    try:
        entry = await take(node)
        assert not entry.pending
        box.fail = 1  # Redis fails for exactly the reply's record
        journal = await run_turn(node, outbound, msg, "first try")
        assert journal.calls == [("started", msg.id)]  # not finished: an attempt
        assert await pending(redis) == 1  # not acked
        assert not await node.outbox.answered(msg.id)
        # This node reads its pending entries again: the turn runs once more.
        again = await take(node)
        assert again.id == entry.id and again.message.id == msg.id
        assert not again.pending  # it never finished: not "maybe answered already"
        journal = await run_turn(node, outbound, msg, "second try")
        assert journal.calls == [("started", msg.id), ("finished", msg.id)]
        assert await outbound.drain(5)
        assert channel.visible(CHAT) == ["second try"]  # once, the run that was recorded
        assert await pending(redis) == 0
        assert await node.streams.read(0.05) == []
    finally:
        await outbound.aclose()


async def test_a_turn_that_outlived_its_partition_cannot_record_its_reply(
    nodes: list[ClusterNode], redis: Redis
) -> None:
    a, b = nodes
    await a.streams.maintain(["a"])
    msg = InboundMessage("memory", CHAT, Sender("u"), "hi", id="memory:2")
    await a.streams.publish(msg)
    stale_channel, channel = MemoryChannel(), MemoryChannel()
    stale = Outbound({"memory": stale_channel}, outbox=a.outbox)
    fresh = Outbound({"memory": channel}, outbox=b.outbox)
    try:
        await take(a)
        # `a` pauses past its leases: `b` takes the partition, claims the entry, runs the turn.
        await redis.delete(*(lease.key for lease in a.streams.leases.values()))
        await b.streams.maintain(["b"])
        assert P in b.streams.owned
        entry = await take(b)
        assert entry.pending and entry.message.id == msg.id
        await run_turn(b, fresh, msg, "from b")
        # `a` wakes up and its turn ends: the stale reply is refused, not recorded.
        journal = Journal()
        writer = a.writer(FinishedInOutbox(BufferedReply(msg, stale.post), msg.id, journal), msg.id)
        await writer.feed(ev.TurnStarted("t", msg.session_key))
        with pytest.raises(Superseded):
            await writer.feed(ev.TurnFinished("from a"))
        await writer.finish()
        assert ("finished", msg.id) not in journal.calls
        assert await fresh.drain(5) and await stale.drain(5)
        assert channel.visible(CHAT) == ["from b"]
        assert stale_channel.visible(CHAT) == []
        assert await RedisOutbox(redis).pending() == []  # nothing left for anyone to deliver
        assert await pending(redis) == 0  # acked by `b`
    finally:
        await stale.aclose()
        await fresh.aclose()


async def test_messages_of_no_turn_here_are_recorded_unfenced(
    nodes: list[ClusterNode], redis: Redis
) -> None:
    a = nodes[0]
    # A reminder, or the `message` tool writing to another chat: no turn of this node.
    await a.outbox.add(OutboundMessage("memory", CHAT, "reminder", in_reply_to="schedule-1"))
    await a.outbox.add(OutboundMessage("memory", CHAT, "elsewhere"))
    assert [p.message.text for p in await RedisOutbox(redis).pending()] == [
        "reminder",
        "elsewhere",
    ]
    assert not a.streams.leases[P].held  # recorded by a node that does not own the chat


# -- the daemon: Discord (the real discord.py against the fake), Redis failing for one record --

TIMEOUT = 10.0


class CountingLLM(DemoLLM):
    runs = 0

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        self.runs += 1
        async for event in super().stream(messages, tools):
            yield event


async def test_the_daemon_answers_once_when_redis_failed_to_record_the_reply(
    tmp_path: Path, redis_server: RedisServer, redis: Redis, discord_fake: FakeDiscord
) -> None:
    discord = discord_fake
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"port": 0},
            "cluster": {"redis_url": redis_server.url, "node": "a", "failover_seconds": 10},
            "channels": {
                "web": {"enabled": False},
                "discord": {"enabled": True, "token": discord.token, "allow_from": ["*"]},
            },
        },
        env={},
    )
    llm = CountingLLM(delay=0)
    async with Daemon(config, llm=llm) as daemon:
        assert daemon.cluster is not None and isinstance(daemon.records, RoutedOutbox)
        box = daemon.records.shared = flaky_outbox(daemon.cluster)
        box.fail = 1  # Redis fails for exactly the reply's record
        await discord.wait_for(lambda: discord.live_sessions == 1, TIMEOUT)
        await discord.user_message(DM, "hello there")

        def answers() -> list[str]:
            return [m.content for m in discord.channel_log(DM) if "hello there" in m.content]

        await discord.wait_for(lambda: llm.runs == 2 and len(answers()) == 1, TIMEOUT)
        assert box.fail == 0 and llm.runs == 2
        assert len(answers()) == 1  # one answer, in the placeholder the first run kept
    # Shutdown waited for the second run's end (it acked the entry) and for its delivery.
    assert await RedisOutbox(redis).pending() == []
    assert await pending(redis, partition_of("discord", str(DM))) == 0
