"""This node's part in a cluster (docs/cluster.md): Redis, heartbeats, partitions, leases.

    intake ─► ClusterNode.publish ─► partition stream ─► owner's consume ─► handle(msg)
    turn finished ─► AckedInStreams ─► XACK
    replies ─► shared outbox ─► delivered by the partition's owner (cluster_delivery.py)
    HoldsConnection channels ─► intake only while this node holds `lease:<channel>`
                                (picobot.runtime.connections)
    reminders (Redis store) ─► fired only by the holder of `lease:scheduler` (`lead`)

Redis down: the heartbeat fails, `ready` turns false (/readyz 503) within a few seconds,
leases and partitions are dropped, loops retry; when Redis is back, the next heartbeat makes
the node ready again and the leases and partitions are taken again. Nothing exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from picobot.cluster import cancellable, connect
from picobot.cluster.budget import SharedRateLimits
from picobot.cluster.dedup import SeenEvents
from picobot.cluster.lease import Lease, keep
from picobot.cluster.nodes import NodeRegistry
from picobot.cluster.outbox import RedisOutbox
from picobot.cluster.partitions import Entry, InboundStreams, consume
from picobot.cluster.schedule import RedisScheduleStore
from picobot.cluster.sessions import RedisSessionStore
from picobot.config import ClusterConfig
from picobot.core import metrics
from picobot.core.channel import Channel, HoldsConnection, RateBudget, ReplyWriter
from picobot.core.errors import BusClosed, StorageError, Superseded
from picobot.core.events import SHUTDOWN, RunEvent, TurnAborted
from picobot.core.messages import InboundMessage
from picobot.core.tasks import cancel_and_wait
from picobot.outbound.ratelimit import Budget
from picobot.runtime.cluster_delivery import PartitionDelivery
from picobot.runtime.connections import HeldConnections
from picobot.storage.records import OutboxStore
from picobot.storage.routed import RoutedOutbox

log = logging.getLogger("picobot.cluster")

LEASE_SHARE = 0.6  # lease TTL as a share of failover_seconds (see docs/cluster.md)
HEARTBEATS = 5  # heartbeats per failover_seconds
SCHEDULER = "scheduler"  # the lease of the node that fires reminders
SCHEDULE_POLL = 1.0  # s: how soon the firing node sees an entry another node added


class ClusterNode:
    """Resource handling: `start()` opens the loops, `stop_intake()` hands the platform leases
    over, `aclose()` gives up partitions, leaves the registry and closes the client.

    Error handling: Redis errors never propagate out of the loops; `publish` and `seen` turn
    them into `BusClosed`, so a channel withholds its ack and the platform sends it again.
    """

    def __init__(self, config: ClusterConfig, *, default_node: str) -> None:
        self.config = config
        self.node = config.node or f"{socket.gethostname()}:{default_node}"
        self.redis = connect(config.redis_url)
        self.ttl = config.failover_seconds * LEASE_SHARE
        self.registry = NodeRegistry(self.redis, self.node, config.failover_seconds)
        self.streams = InboundStreams(self.redis, self.node, ttl=self.ttl)
        self.history = RedisSessionStore(self.redis)
        # Replies are delivered under the lease of their chat's partition, and a turn's
        # replies recorded under the lease the turn started under (both fenced).
        self.outbox = RedisOutbox(
            self.redis,
            fence=lambda p: self.streams.leases[p].fence,
            turn_fence=self.streams.turn_fence,
        )
        self.delivery: PartitionDelivery | None = None
        self._seen = SeenEvents(self.redis)
        self.connections = HeldConnections(self.redis, self.node, self.ttl)
        self.leases = self.connections.leases  # by channel name: fences what an intake queues
        # Reminders: any node adds, lists, cancels; the lease holder fires (fenced writes).
        self.scheduler_lease = Lease(self.redis, SCHEDULER, self.node, self.ttl)
        self.schedules = RedisScheduleStore(self.redis, self.scheduler_lease)
        self.schedule_poll = SCHEDULE_POLL
        self._leading: list[tuple[asyncio.Task[None], Lease, Callable[[], Awaitable[None]]]] = []
        self.ready = False
        self._set_up = False
        self._http = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: asyncio.Task[None] | None = None
        self._beat_ok = asyncio.Event()

    # -- wiring -----------------------------------------------------------------------------

    def budget(self, channel: str, budget: RateBudget) -> Budget:
        return SharedRateLimits(self.redis, channel, budget)

    def share_outbox(self, local: OutboxStore, is_local: Callable[[str], bool]) -> RoutedOutbox:
        """The outbox in cluster mode: channels `is_local` selects keep `local`; the others
        share the Redis outbox, delivered by their partition's owner (`self.delivery`)."""
        self.delivery = PartitionDelivery(self.streams, is_local)
        return RoutedOutbox(local, self.outbox, is_local)

    @property
    def poll_timeout(self) -> float:
        """Long polls end within this, so a hand-over never waits long for the last one."""
        return max(1.0, self.config.failover_seconds / 4)

    def prepare(self, channel: Channel) -> None:
        """Before a channel starts: one whose intake is one connection per bot connects for
        sending only (`start()`), and its intake runs while this node holds the lease named
        after it, from the moment it is connected (see `picobot.runtime.connections`)."""
        if isinstance(channel, HoldsConnection) and channel.exclusive_intake:
            channel.defer_intake(self.poll_timeout)
            self.connections.hold(channel.name, channel, lambda: channel.connected)

    async def hand_over(self, name: str) -> None:
        """Before the channel `name` stops (a reload): hand its connection's lease over."""
        await self.connections.hand_over(name)

    def checks(self) -> dict[str, str]:
        """Readiness beyond the channels (/readyz): whether this node reaches Redis."""
        return {"cluster": "ok" if self.ready else "redis unreachable"}

    async def seen(self, msg: InboundMessage) -> bool:
        """Record `msg` cluster-wide; True for a replayed event.

        :raises BusClosed: if Redis cannot be reached (the event was not taken).
        """
        try:
            return await self._seen.seen(msg.id)
        except RedisError as exc:
            raise BusClosed(f"cluster: Redis unreachable ({exc})") from None

    async def publish(self, msg: InboundMessage) -> None:
        """Queue `msg` on its partition (fenced by the channel's lease when it has one).

        :raises BusClosed: if Redis cannot be reached, or this node lost the lease meanwhile.
        """
        lease = self.leases.get(msg.channel)
        fence = lease.fence if lease is not None else None
        if lease is not None and fence is None:  # polled just before the lease was lost
            await self._forget(msg)
            raise BusClosed(f"cluster: this node no longer holds the {msg.channel} lease")
        try:
            await self.streams.publish(msg, fence)
        except RedisError as exc:
            await self._forget(msg)
            if lease is not None:
                # The poller stops on BusClosed: give the lease up, so polling restarts
                # (here or elsewhere) through the keeper instead of staying stopped.
                await lease.release()
            raise BusClosed(f"cluster: could not queue the message ({exc})") from None

    async def _forget(self, msg: InboundMessage) -> None:
        # Not taken: its redelivery (to this node or the next holder) must not count as seen.
        with contextlib.suppress(RedisError):
            await self._seen.forget(msg.id)

    # -- running ----------------------------------------------------------------------------

    async def start(self, http: str, handle: Callable[[InboundMessage], Awaitable[None]]) -> None:
        """Start heartbeats, partition upkeep and consumption (the platform leases are kept
        from `prepare()` on). Returns at once (Redis may be down)."""
        self._http = http
        self._tasks.append(asyncio.create_task(self._upkeep(), name="cluster upkeep"))

        async def hand(entry: Entry) -> None:
            # Taken over from a node that died after recording the reply: the reply is
            # delivered (resumed with the partition), the turn is not run again.
            if entry.pending and await self.outbox.answered(entry.message.id):
                log.info("partition %d: %s was answered already", entry.partition, entry.id)
                await self.streams.done(entry.message.id)
                return
            await handle(entry.message)

        self._consumer = asyncio.create_task(
            consume(self.streams, hand, block=min(1.0, self.ttl / 6)), name="cluster consumer"
        )

    def lead(
        self,
        lease: Lease,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        """Run a job on one node of the cluster at a time: `start()` when this node takes
        `lease`, `stop()` the moment it loses it (or in `stop_leading`). Neither may raise."""
        self.leases[lease.name] = lease
        task = asyncio.create_task(keep(lease, acquired=start, lost=stop), name=lease.name)
        self._leading.append((task, lease, stop))

    async def stop_leading(self) -> None:
        """Stop the jobs this node leads and release their leases: the next node starts them
        at once, without waiting for the lease to expire."""
        leading, self._leading = self._leading, []
        for task, lease, stop in leading:
            await cancel_and_wait(task)
            if lease.held:
                await stop()
                await lease.release()

    async def _upkeep(self) -> None:
        interval = self.config.failover_seconds / HEARTBEATS
        while True:
            try:
                await cancellable(self._round())
            except (RedisError, OSError) as exc:
                if self.ready:
                    log.error("cluster: Redis unreachable (%s); not ready", exc)
                self.ready = False
                self._set_up = False  # a Redis that restarted empty needs its groups again
                self.streams.drop_all()  # their leases run out; others take over
            if self.delivery is not None:
                try:
                    await self.delivery.follow()  # the outbox's lanes follow the partitions
                except Exception:  # never stop the heartbeats
                    log.exception("cluster: following the partitions with the outbox failed")
            await asyncio.sleep(interval)

    async def _round(self) -> None:
        if not self._set_up:
            await self.streams.setup()
            self._set_up = True
        await self.registry.beat(self._info())
        live = await self.registry.live()
        await self.streams.maintain(list(live))
        if not self.ready:
            log.info("cluster: node %s ready (%d live nodes)", self.node, len(live))
        self.ready = True
        metrics.CLUSTER_PARTITIONS.set(len(self.streams.owned))

    def _info(self) -> dict[str, Any]:
        return {
            "http": self._http,
            "partitions": sorted(self.streams.owned),
            "leases": sorted(n for n, lease in self.leases.items() if lease.held),
            "seen": round(time.time(), 1),
        }

    def queue(
        self,
        run_here: Callable[[InboundMessage], Awaitable[None]],
        *,
        closed: Callable[[], bool],
        here: Callable[[str], bool],
    ) -> ClusterQueue:
        """The intake's queue: the partition streams (see `ClusterQueue`)."""
        return ClusterQueue(self, run_here, closed=closed, here=here)

    def writer(self, writer: ReplyWriter, inbound_id: str) -> ReplyWriter:
        """Wrap a turn's writer: its stream entry is acked when the turn is over."""
        return AckedInStreams(writer, inbound_id, self.streams, self.outbox)

    async def status(self) -> dict[str, object]:
        """The `cluster` object of /api/status (this node's view)."""
        view: dict[str, object] = {
            "node": self.node,
            "redis": "ok" if self.ready else "unreachable",
            "ready": self.ready,
            "failover_seconds": self.config.failover_seconds,
            "owned_partitions": sorted(self.streams.owned),
        }
        metrics.CLUSTER_UP.set(1 if self.ready else 0)
        try:
            live = await self.registry.live()
            owners = await self.streams.owners()
            holders = {name: await lease.holder() for name, lease in self.leases.items()}
        except RedisError as exc:
            view["error"] = str(exc)
            return view
        view["nodes"] = live
        view["leases"] = holders
        view["partitions"] = {str(p): n for p, n in owners.items()}
        return view

    # -- stopping ---------------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Hand over every platform lease: intake stops after its last poll returned, then the
        lease is released so the next node starts at once. Stops consuming new entries."""
        await self.connections.hand_over_all()
        if self.delivery is not None:
            self.delivery.stop()  # no new deliveries: the door and the outbox close soon
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

    async def aclose(self) -> None:
        """Give up partitions (unfinished entries stay pending for the next owner), leave."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self.streams.release_all()
            await self.registry.leave()
        await self.redis.aclose()


class ClusterQueue:
    """The intake's queue in cluster mode: the partitioned streams, except for channels that
    write their replies to a client connected to this node (the web chat): `here(channel)`."""

    def __init__(
        self,
        node: ClusterNode,
        run_here: Callable[[InboundMessage], Awaitable[None]],
        *,
        closed: Callable[[], bool],
        here: Callable[[str], bool],
    ) -> None:
        self._node, self._run_here, self._closed, self._here = node, run_here, closed, here

    @property
    def closed(self) -> bool:
        return self._closed()

    async def publish(self, msg: InboundMessage) -> None:
        if self._here(msg.channel):
            await self._run_here(msg)
        else:
            await self._node.publish(msg)


class AckedInStreams:
    """Wraps a reply writer: when the turn is over, its stream entry is acked (after the
    writer delivered what it had), so no other node runs it again.

    Not acked, so it runs again (`InboundStreams.again`): a turn cut by shutdown (on the
    partition's next owner), and a turn whose reply could not be recorded — the writer raised
    `StorageError` (Redis failed: here, once Redis answers; `Superseded`, the partition moved
    since the turn started: on its new owner, which the stale reply must not race).
    """

    def __init__(
        self, writer: ReplyWriter, inbound_id: str, streams: InboundStreams, outbox: RedisOutbox
    ) -> None:
        self.writer = writer
        self.inbound_id = inbound_id
        self.streams = streams
        self.outbox = outbox
        self._interrupted = False
        self._unrecorded: StorageError | None = None

    async def feed(self, event: RunEvent) -> None:
        if isinstance(event, TurnAborted) and event.reason == SHUTDOWN:
            self._interrupted = True
        try:
            await self.writer.feed(event)
        except StorageError as exc:
            self._unrecorded = exc
            raise

    async def finish(self) -> None:
        try:
            await self.writer.finish()  # if this is cut short, the turn is not acked either
        except StorageError as exc:
            self._unrecorded = exc
            await self._settle()
            raise
        await self._settle()

    async def _settle(self) -> None:
        if self._unrecorded is not None:
            if isinstance(self._unrecorded, Superseded):
                log.info("cluster: reply to %s dropped: its partition moved", self.inbound_id)
            else:
                log.warning(
                    "cluster: reply to %s not recorded (%s); the turn runs again",
                    *(self.inbound_id, self._unrecorded),
                )
            self.streams.again(self.inbound_id)
        elif not self._interrupted:
            try:
                await self.streams.done(self.inbound_id)
                await self.outbox.finished(self.inbound_id)  # its placeholder record goes
            except (RedisError, StorageError) as exc:  # stays pending: the next owner runs it
                log.warning("cluster: could not ack %s (%s)", self.inbound_id, exc)
