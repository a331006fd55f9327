"""The node registry: each node's heartbeat key, and the `cluster` object of /api/status.

`picobot:node:<name>` holds the node's JSON description and expires ``ttl`` after its last
heartbeat; `picobot:nodes` lists the names ever seen (pruned of expired ones when read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from picobot.cluster import key

NODES = key("nodes")


class NodeRegistry:
    def __init__(self, redis: Redis, node: str, ttl: float) -> None:
        self.redis = redis
        self.node = node
        self.ttl_ms = max(1, int(ttl * 1000))

    async def beat(self, info: Mapping[str, Any]) -> None:
        """Say this node is alive, with `info` (JSON-able) for the others to see.

        :raises redis.exceptions.RedisError: if Redis cannot be reached.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key("node", self.node), json.dumps(dict(info)), px=self.ttl_ms)
            pipe.sadd(NODES, self.node)
            await pipe.execute()

    async def leave(self) -> None:
        """This node stops: the others stop counting it at once."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key("node", self.node))
            pipe.srem(NODES, self.node)
            await pipe.execute()

    async def live(self) -> dict[str, dict[str, Any]]:
        """Every node whose heartbeat has not expired, by name (sorted), with its info."""
        members = await self.redis.smembers(NODES)  # type: ignore[misc]  # redis-py's stubs
        names = sorted(str(n) for n in members)
        if not names:
            return {}
        values = await self.redis.mget([key("node", n) for n in names])
        gone = [n for n, v in zip(names, values, strict=True) if v is None]
        if gone:
            await self.redis.srem(NODES, *gone)  # type: ignore[misc]
        return {n: json.loads(v) for n, v in zip(names, values, strict=True) if v is not None}
