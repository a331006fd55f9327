"""Cluster mode: several picobot processes sharing one Redis (see docs/cluster.md).

Every key lives under `PREFIX`. Modules: `lease` (leases with fencing tokens), `budget`
(shared rate budgets), `partitions` (inbound streams by conversation), `dedup` (events seen
cluster-wide), `nodes` (the node registry), `sessions` (history), `schedule` (reminders).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from redis.asyncio import Redis

T = TypeVar("T")

PREFIX = "picobot:"
CONNECT_TIMEOUT = 2.0  # seconds: Redis down shows within a few seconds
COMMAND_TIMEOUT = 5.0  # longer than any blocking read we issue


def connect(url: str) -> Redis:
    """A client for `url` (``redis://host:port/db``); connects lazily, on the first command.

    :raises ValueError: if `url` is not a Redis URL.
    """
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        health_check_interval=10,
    )


def key(*parts: object) -> str:
    """A key under `PREFIX`: ``key("lease", "telegram")`` -> ``picobot:lease:telegram``."""
    return PREFIX + ":".join(str(p) for p in parts)


async def cancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Await a Redis call so that cancelling the caller always works.

    redis-py (seen with 7.4 and 8.x) sometimes swallows a cancellation that lands while a
    command is in flight, leaving the task running. Loops that must stop when cancelled await
    their Redis calls through this: the call finishes in its own task, we stop at once.
    """
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the caller may be gone: its error is not "never retrieved"
