"""The Discord gateway and Slack Socket Mode under a lease: two nodes (two ClusterNodes, two
channels, one real redis-server), the real discord.py / slack-bolt against the platform fakes.

Exactly one node holds the connection; the other sends over HTTP; a graceful stop hands the
connection over at once; a lost lease disconnects at once. Nothing sleeps: tests wait on what
the fakes saw, or on what the nodes' sinks received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from channels.discord_channel import STANDBY as DISCORD_STANDBY
from channels.discord_channel import DiscordChannel
from channels.slack_channel import STANDBY as SLACK_STANDBY
from channels.slack_channel import SlackChannel
from picobot.cluster.lease import Lease
from picobot.config import ClusterConfig, DiscordConfig, SlackConfig
from picobot.core.channel import Channel, State
from picobot.core.errors import ConfigError
from picobot.core.messages import InboundMessage
from picobot.runtime.cluster import ClusterNode
from picobot.text.render import render
from tests.cluster.conftest import DM
from tests.cluster.redis_server import RedisServer
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_slack import FakeSlack

# Seconds: lease TTL 6 s, standbys try every 1 s. A shorter TTL lets a loaded machine starve
# a holder's renewals past it: the lease expires and a standby connects while it still holds.
FAILOVER = 10.0
TIMEOUT = 10.0


class Inbox:
    """What one node's channel handed to its sink."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self._changed = asyncio.Condition()

    async def __call__(self, msg: InboundMessage) -> None:
        async with self._changed:
            self.messages.append(msg)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[InboundMessage]], bool]) -> None:
        async with self._changed:
            async with asyncio.timeout(TIMEOUT):
                await self._changed.wait_for(lambda: predicate(self.messages))

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


class Node:
    def __init__(self, cluster: ClusterNode, channel: Channel, inbox: Inbox) -> None:
        self.cluster, self.channel, self.inbox = cluster, channel, inbox

    @property
    def holds(self) -> bool:
        lease = self.cluster.leases.get(self.channel.name)
        return lease is not None and lease.held


@asynccontextmanager
async def nodes(
    redis_server: RedisServer, make: Callable[[Inbox], Channel], names: tuple[str, ...]
) -> AsyncIterator[dict[str, Node]]:
    """One ClusterNode per name, each with its channel prepared (lease keeper) and started."""
    made: dict[str, Node] = {}
    try:
        for name in names:
            config = ClusterConfig(redis_url=redis_server.url, node=name, failover_seconds=FAILOVER)
            inbox = Inbox()
            made[name] = node = Node(ClusterNode(config, default_node="0"), make(inbox), inbox)
            node.cluster.prepare(node.channel)
            try:
                await node.channel.start()
            except ConfigError:  # as the supervisor does: the channel stays FAILED
                pass
        yield made
    finally:
        for node in made.values():
            await node.cluster.stop_intake()
            await node.channel.stop()
            await node.cluster.aclose()


def holder(made: dict[str, Node]) -> tuple[Node, Node]:
    """(the node holding the lease, the other one)."""
    [held] = [n for n in made.values() if n.holds]
    [other] = [n for n in made.values() if n is not held]
    return held, other


# -- Discord ---------------------------------------------------------------------------------


def discord_channel(fake: FakeDiscord, token: str | None = None) -> Callable[[Inbox], Channel]:
    config = DiscordConfig(enabled=True, token=token or fake.token, allow_from=("*",))
    return lambda inbox: DiscordChannel(config, inbox)


def identifies(fake: FakeDiscord) -> int:
    return sum(1 for frame in fake.gateway_received if frame["op"] == 2)


async def test_one_node_holds_the_discord_gateway_and_hands_it_over(
    redis_server: RedisServer, redis: Redis, discord_fake: FakeDiscord
) -> None:
    fake = discord_fake
    async with nodes(redis_server, discord_channel(fake), ("a", "b")) as made:
        await fake.wait_for(lambda: fake.live_sessions == 1, TIMEOUT)
        held, other = holder(made)
        # The standby is logged in over HTTP: ready, and it sends (the REST API needs no gateway).
        assert other.channel.state is State.CONNECTED
        assert other.channel.state_detail == DISCORD_STANDBY
        sent = await other.channel.send(str(DM), render("from the standby", "discord"))
        assert [str(m.message_id) for m in fake.channel_log(DM)] == [sent]
        # Only the holder receives.
        await fake.user_message(DM, "first")
        await held.inbox.wait_for(lambda got: len(got) == 1)
        assert held.inbox.texts() == ["first"] and other.inbox.messages == []

        # SIGTERM on the holder: gateway closed, lease released; the other connects at once.
        await held.cluster.stop_intake()
        assert not held.holds and held.channel.state_detail == DISCORD_STANDBY
        await fake.wait_for(lambda: identifies(fake) == 2 and fake.live_sessions == 1, TIMEOUT)
        assert other.holds and fake.peak_sessions == 1
        assert await redis.get("picobot:lease:discord") == f"{other.cluster.node} 2"
        await fake.user_message(DM, "second")
        await other.inbox.wait_for(lambda got: len(got) == 1)
        assert other.inbox.texts() == ["second"] and held.inbox.texts() == ["first"]
        # The former holder still sends.
        await held.channel.send(str(DM), render("still sending", "discord"))
        assert fake.channel_log(DM)[-1].content == "still sending"


async def test_a_lost_discord_lease_closes_the_gateway_at_once(
    redis_server: RedisServer, redis: Redis, discord_fake: FakeDiscord
) -> None:
    fake = discord_fake
    async with nodes(redis_server, discord_channel(fake), ("a",)) as made:
        await fake.wait_for(lambda: fake.live_sessions == 1, TIMEOUT)
        node = made["a"]
        # Another node took the lease (this one was paused past its TTL, say).
        await redis.delete("picobot:lease:discord")
        assert await Lease(redis, "discord", "x", 60).try_acquire()
        await fake.wait_for(lambda: fake.live_sessions == 0, TIMEOUT)
        assert not node.holds
        assert node.channel.state is State.CONNECTED
        assert node.channel.state_detail == DISCORD_STANDBY


async def test_a_node_whose_discord_login_failed_leaves_the_lease_to_the_others(
    redis_server: RedisServer, redis: Redis, discord_fake: FakeDiscord
) -> None:
    fake = discord_fake
    bad = discord_channel(fake, token="WRONG.TOKEN")
    good = discord_channel(fake)
    made_channels = iter([bad, good])
    async with nodes(redis_server, lambda inbox: next(made_channels)(inbox), ("a", "b")) as made:
        assert made["a"].channel.state is State.FAILED
        await fake.wait_for(lambda: fake.live_sessions == 1, TIMEOUT)
        assert made["b"].holds and not made["a"].holds


# -- Slack Socket Mode -----------------------------------------------------------------------


@pytest.fixture
async def slack_fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def slack_channel(fake: FakeSlack, **settings: Any) -> Callable[[Inbox], Channel]:
    config = SlackConfig(
        enabled=True,
        bot_token=fake.bot_token,
        app_token=fake.app_token,
        base_url=fake.base_url,
        allow_from=("*",),
        **settings,
    )
    return lambda inbox: SlackChannel(config, inbox)


async def test_one_node_holds_the_slack_socket_and_hands_it_over(
    redis_server: RedisServer, redis: Redis, slack_fake: FakeSlack
) -> None:
    fake = slack_fake
    async with nodes(redis_server, slack_channel(fake), ("a", "b")) as made:
        await fake.wait_for(lambda: fake.open_sockets == 1, TIMEOUT)
        held, other = holder(made)
        assert other.channel.state is State.CONNECTED
        assert other.channel.state_detail == SLACK_STANDBY
        ts = await other.channel.send("D1", render("from the standby", "slack_mrkdwn"))
        assert [m.ts for m in fake.channel_log("D1")] == [ts]
        first = await fake.push_event(fake.dm_event("U1", "first"))
        await fake.wait_ack(first)
        assert held.inbox.texts() == ["first"] and other.inbox.messages == []

        await held.cluster.stop_intake()
        assert not held.holds and held.channel.state_detail == SLACK_STANDBY
        await fake.wait_for(lambda: fake.socket_connections == 2 and fake.open_sockets == 1)
        assert other.holds and fake.peak_sockets == 1
        assert await redis.get("picobot:lease:slack") == f"{other.cluster.node} 2"
        second = await fake.push_event(fake.dm_event("U1", "second"))
        await fake.wait_ack(second)
        assert other.inbox.texts() == ["second"] and held.inbox.texts() == ["first"]


async def test_a_lost_slack_lease_closes_the_socket_at_once(
    redis_server: RedisServer, redis: Redis, slack_fake: FakeSlack
) -> None:
    fake = slack_fake
    async with nodes(redis_server, slack_channel(fake), ("a",)) as made:
        await fake.wait_for(lambda: fake.open_sockets == 1, TIMEOUT)
        await redis.delete("picobot:lease:slack")
        assert await Lease(redis, "slack", "x", 60).try_acquire()
        await fake.wait_for(lambda: fake.open_sockets == 0, TIMEOUT)
        assert not made["a"].holds and made["a"].channel.state is State.CONNECTED


async def test_slack_over_http_is_not_leased(redis_server: RedisServer, redis: Redis) -> None:
    config = SlackConfig(
        enabled=True, bot_token="xoxb-0000000000", signing_secret="s" * 16, mode="http"
    )
    channel = SlackChannel(config, Inbox())
    cluster = ClusterNode(
        ClusterConfig(redis_url=redis_server.url, node="a", failover_seconds=FAILOVER),
        default_node="0",
    )
    try:
        assert not channel.exclusive_intake
        cluster.prepare(channel)  # webhooks may reach any node: no lease, intake not deferred
        assert cluster.leases == {}
    finally:
        await cluster.aclose()
