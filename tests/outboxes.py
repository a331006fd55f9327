"""Both outbox backends behind one fixture, so the behavioural tests run against each:
SQLite in the test's folder, and Redis on the session's real `redis-server`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from picobot.storage.outbox import Outbox
from picobot.storage.records import OutboxStore


class Outboxes(Protocol):
    name: str

    def open(self) -> contextlib.AbstractAsyncContextManager[OutboxStore]:
        """A fresh handle on the same store (a reopen: what a restarted node sees)."""


class SqliteOutboxes:
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[OutboxStore]:
        async with Outbox.in_dir(self.folder) as box:
            yield box


class RedisOutboxes:
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self._fresh = True

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[OutboxStore]:
        from picobot.cluster import connect
        from picobot.cluster.outbox import RedisOutbox

        client = connect(self.url)
        try:
            if self._fresh:  # each test starts on an empty database
                await client.flushdb()
                self._fresh = False
            yield RedisOutbox(client)
        finally:
            await client.aclose()
