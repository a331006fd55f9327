"""Reminders in cluster mode, against a real redis-server: any node adds, the `scheduler`
lease holder fires, each entry once. Clocks are injected; waits are on events.

(The Redis store's behaviour as a store is tested with the SQLite one's tests:
tests/agent/test_scheduler.py runs each against both.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from picobot.agent.abilities import Abilities
from picobot.agent.schedule import Scheduler, Target
from picobot.agent.schedule.scheduler import firing_id
from picobot.cluster.lease import Lease
from picobot.cluster.schedule import RedisScheduleStore
from picobot.config import ClusterConfig, Config
from picobot.core.messages import OutboundMessage
from picobot.runtime.cluster import SCHEDULER, ClusterNode
from tests.cluster.redis_server import RedisServer

START = 1_800_000_000.0
HERE = Target("telegram", "42")
THERE = Target("telegram", "43")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Sent(list[OutboundMessage]):
    """A node's outbound door: records what it is handed, and says when."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    async def __call__(self, msg: OutboundMessage) -> None:
        self.append(msg)
        self.arrived.set()


def texts(*sent: Sent) -> list[str]:
    return sorted(m.text for s in sent for m in s)


def node_scheduler(redis: Redis, name: str, clock: Clock, sent: Sent) -> tuple[Lease, Scheduler]:
    lease = Lease(redis, SCHEDULER, name, ttl=5)
    return lease, Scheduler(RedisScheduleStore(redis, lease), sent, clock=clock)


async def test_any_node_adds_only_the_lease_holder_fires(redis: Redis) -> None:
    clock, sent_a, sent_b = Clock(), Sent(), Sent()
    lease_a, a = node_scheduler(redis, "a", clock, sent_a)
    _, b = node_scheduler(redis, "b", clock, sent_b)
    assert await lease_a.try_acquire()
    await a.create(HERE, "from a", in_seconds=60)
    made_on_b = await b.create(THERE, "from b", in_seconds=60)
    assert [e.text for e in await a.entries(THERE.chat)] == ["from b"]  # seen everywhere
    clock.now += 60
    await b.fire_due()  # not the holder: fires nothing
    assert sent_b == []
    await a.fire_due()
    await a.fire_due()
    await b.fire_due()
    assert texts(sent_a, sent_b) == ["⏰ from a", "⏰ from b"]
    assert await b.entries(THERE.chat) == [] and await a.entries(HERE.chat) == []
    # Cancelling works from any node too.
    later = await a.create(THERE, "later", in_seconds=600)
    assert (await b.cancel(THERE.chat, later.id)).id == later.id != made_on_b.id


async def test_a_paused_ex_holder_neither_fires_nor_advances(redis: Redis) -> None:
    clock, sent_a, sent_b = Clock(), Sent(), Sent()
    lease_a, a = node_scheduler(redis, "a", clock, sent_a)
    lease_b, b = node_scheduler(redis, "b", clock, sent_b)
    assert await lease_a.try_acquire()
    daily = await b.create(HERE, "standup", cron="0 9 * * *")
    clock.now = daily.due
    # a pauses past its lease; it runs out and b takes it. a still believes it holds it.
    await redis.delete(lease_a.key)
    assert await lease_b.try_acquire() and lease_a.held
    await a.fire_due()
    assert sent_a == []  # fenced before firing
    await b.fire_due()
    await a.fire_due()
    assert texts(sent_a, sent_b) == ["⏰ standup"]
    (moved,) = await a.entries(HERE.chat)
    assert moved.due == daily.due + 86400


async def test_an_advance_after_the_lease_was_lost_is_refused(redis: Redis) -> None:
    """a is paused between its check and its write: its advance is refused (fenced), so the
    entry stays for b, which fires it with the same message id (an outbox shared by the
    nodes records it once)."""
    clock, sent_b = Clock(), Sent()
    lease_a = Lease(redis, SCHEDULER, "a", ttl=5)
    lease_b, b = node_scheduler(redis, "b", clock, sent_b)

    async def deliver_then_pause(msg: OutboundMessage) -> None:
        sent_a.append(msg)
        await redis.delete(lease_a.key)
        assert await lease_b.try_acquire()

    sent_a: list[OutboundMessage] = []
    a = Scheduler(RedisScheduleStore(redis, lease_a), deliver_then_pause, clock=clock)
    assert await lease_a.try_acquire()
    entry = await a.create(HERE, "once", in_seconds=60)
    clock.now += 60
    await a.fire_due()
    assert [e.id for e in await b.entries(HERE.chat)] == [entry.id]  # not deleted by a
    await b.fire_due()
    assert [m.id for m in sent_a] == [m.id for m in sent_b] == [firing_id(entry)]
    assert await b.entries(HERE.chat) == []


# -- the daemon's wiring: ClusterNode.lead + Abilities, two nodes ----------------------------


class Node:
    """One node's cluster part and abilities, with the scheduler under the lease."""

    def __init__(self, name: str, url: str, data_dir: Path, clock: Clock) -> None:
        config = ClusterConfig(redis_url=url, node=name, failover_seconds=1.5)
        self.cluster = ClusterNode(config, default_node="0")
        self.sent = Sent()
        self.abilities = Abilities(
            Config(data_dir=data_dir),
            self.sent,
            _no_turns,
            store=self.cluster.schedules,
            poll=self.cluster.schedule_poll,
        )
        self.abilities.scheduler.clock = clock
        self.leading = asyncio.Event()

    def lead(self, recorded: Callable[[str], Awaitable[bool]]) -> None:
        async def start() -> None:
            await self.abilities.lead_scheduler(recorded)
            self.leading.set()

        self.cluster.lead(self.cluster.scheduler_lease, start, self.abilities.stop_scheduler)

    async def die(self) -> None:
        """Stops without releasing anything (its lease runs out in Redis)."""
        for task, _, _ in self.cluster._leading:
            task.cancel()
        await self.abilities.stop_scheduler()

    async def aclose(self) -> None:
        await self.cluster.stop_leading()
        await self.abilities.aclose()
        await self.cluster.redis.aclose()


async def _no_turns(session: str, text: str) -> str:
    raise AssertionError("no run_agent entries here")


async def _nothing_recorded(msg_id: str) -> bool:
    return False


@pytest.fixture
async def nodes(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> AsyncIterator[tuple[Node, Node, Clock]]:
    clock = Clock()
    a = Node("a", redis_server.url, tmp_path / "a", clock)
    b = Node("b", redis_server.url, tmp_path / "b", clock)
    try:
        yield a, b, clock
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.parametrize("how", ["stops", "dies"])
async def test_a_reminder_made_on_a_fires_once_on_b_after_a_is_gone(
    nodes: tuple[Node, Node, Clock], how: str
) -> None:
    a, b, clock = nodes
    a.lead(_nothing_recorded)
    async with asyncio.timeout(10):
        await a.leading.wait()
    b.lead(_nothing_recorded)
    entry = await a.abilities.scheduler.create(HERE, "made on a", in_seconds=30)
    assert (await b.cluster.status())["leases"] == {SCHEDULER: "a"}
    if how == "stops":
        await a.cluster.stop_leading()  # SIGTERM: the lease is handed over at once
    else:
        await a.die()  # SIGKILL: the lease runs out in Redis
    async with asyncio.timeout(10):
        await b.leading.wait()
    clock.now += 30  # b's loop looks again within its poll interval and fires
    async with asyncio.timeout(10):
        await b.sent.arrived.wait()
        await b.abilities.scheduler.settle()
    assert [(m.text, m.id) for m in b.sent] == [("⏰ made on a", firing_id(entry))]
    await a.abilities.scheduler.fire_due()  # a (if it still ran) fires nothing more
    assert a.sent == [] and await b.abilities.scheduler.entries(HERE.chat) == []
    assert (await b.cluster.status())["leases"] == {SCHEDULER: "b"}


async def test_the_new_holder_does_not_fire_what_the_outbox_already_holds(
    nodes: tuple[Node, Node, Clock],
) -> None:
    """The holder died between recording a firing in the outbox and advancing the entry: the
    next holder reconciles with the outbox before firing."""
    a, b, clock = nodes
    entry = await a.abilities.scheduler.create(HERE, "recorded", in_seconds=30)
    clock.now += 30
    held = {firing_id(entry)}

    async def recorded(msg_id: str) -> bool:
        return msg_id in held

    b.lead(recorded)
    async with asyncio.timeout(10):
        await b.leading.wait()
    await b.abilities.scheduler.settle()
    assert b.sent == [] and await b.abilities.scheduler.entries(HERE.chat) == []
