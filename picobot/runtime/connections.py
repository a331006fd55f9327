"""Platform connections held under a lease (cluster mode, docs/cluster.md): Telegram long
polling, the Discord gateway and Slack Socket Mode run on one node at a time.

    hold(channel) ─► keeper: channel connected (for sending) ─► lease taken ─► open_intake()
                             renewal failed ─► close_intake(finish_poll=False), at once
    hand_over(name) (SIGTERM, reload) ─► keeper stops ─► close_intake(finish_poll=True) ─► release

The lease is named after the channel. A channel that could not connect (token rejected,
platform unreachable from here) does not take the lease, so a node that can takes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from picobot.cluster.lease import Lease, keep
from picobot.core.channel import HoldsConnection
from picobot.core.tasks import cancel_and_wait

log = logging.getLogger("picobot.cluster")


class HeldConnections:
    """The lease keepers of this node's `HoldsConnection` channels, by channel name.

    `leases` is this node's view (for fencing what an intake queues, and for /api/status).
    """

    def __init__(self, redis: Redis, node: str, ttl: float) -> None:
        self.redis, self.node, self.ttl = redis, node, ttl
        self.leases: dict[str, Lease] = {}
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._holders: dict[str, HoldsConnection] = {}

    def hold(self, name: str, channel: HoldsConnection, ready: Callable[[], bool]) -> None:
        """Keep the lease `name` for `channel` whenever `ready()` (connected for sending)."""
        old = self._keepers.pop(name, None)
        if old is not None:  # not handed over: its lease runs out by itself
            log.warning("lease %s: a new channel replaces one that was not handed over", name)
            old.cancel()
        lease = self.leases[name] = Lease(self.redis, name, self.node, self.ttl)
        self._holders[name] = channel

        async def acquired() -> None:
            try:
                await channel.open_intake()
            except Exception as exc:  # the platform is unreachable: give the lease back
                log.warning("%s: could not start intake (%s); lease released", name, exc)
                await lease.release()

        async def lost() -> None:
            await channel.close_intake(finish_poll=False)

        self._keepers[name] = asyncio.create_task(
            keep(lease, acquired=acquired, lost=lost, eligible=ready), name=f"lease {name}"
        )

    async def hand_over(self, name: str) -> None:
        """Stop keeping the lease `name`; if held, close the intake after its last poll (or
        once what it received reached the sink), then release it: the next node starts now."""
        task = self._keepers.pop(name, None)
        channel = self._holders.pop(name, None)
        lease = self.leases.get(name)
        if task is not None:
            await cancel_and_wait(task)
        try:
            if lease is not None and channel is not None and lease.held:
                log.info("lease %s: handing over after the last poll", name)
                try:  # what the intake still queues meanwhile is fenced by the lease
                    await channel.close_intake(finish_poll=True)
                finally:
                    await lease.release()
        finally:
            if lease is not None and self.leases.get(name) is lease:  # handed over once
                del self.leases[name]

    async def hand_over_all(self) -> None:
        for name in list(self._keepers):
            await self.hand_over(name)
