"""Conversation history per session, in SQLite (WAL) under `data_dir`, surviving restarts.

A turn's messages are written in one transaction when the turn ends, so an aborted or failed
turn leaves the history as it was. Each write also prunes the session to its newest
`keep` messages, cut at a turn boundary (see `trim_history`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from picobot.core.errors import StorageError
from picobot.core.messages import Message
from picobot.storage.datadir import storage_error_text
from picobot.storage.sqlite import connect

DB_NAME = "sessions.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    role    TEXT NOT NULL,
    data    TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_session ON messages (session, id);
"""


def trim_start(roles: Sequence[str], limit: int) -> int:
    """Index of the first message to keep so at most `limit` remain, cut at a turn boundary.

    The kept part starts with a user message when one is in the window; otherwise it at least
    never starts with a tool result whose assistant `tool_calls` message was cut off (the API
    rejects such orphans).
    """
    start = max(0, len(roles) - limit)
    for i in range(start, len(roles)):
        if roles[i] == "user":
            return i
    while start < len(roles) and roles[start] == "tool":
        start += 1
    return start


def trim_history(messages: Sequence[Message], limit: int) -> list[Message]:
    """The newest messages, at most `limit`, starting at a turn boundary (see `trim_start`)."""
    return list(messages[trim_start([str(m.get("role")) for m in messages], limit) :])


class SessionStore:
    """Messages per session key, oldest first. Opens lazily; `aclose()` when done.

    All statements run under one lock: the single connection is shared by every session, and
    interleaved transactions on it would mix their writes.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        on_write: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.path = path
        self.on_write = on_write  # told of every write's outcome (readiness follows the disk)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def in_dir(
        cls,
        data_dir: str | Path,
        *,
        on_write: Callable[[BaseException | None], None] | None = None,
    ) -> SessionStore:
        return cls(Path(data_dir) / DB_NAME, on_write=on_write)

    async def open(self) -> None:
        """Open the database (idempotent).

        :raises RuntimeError: if the store was closed.
        :raises sqlite3.Error: if the file cannot be opened.
        """
        async with self._lock:
            await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        if self._closed:
            raise RuntimeError("the session store is closed")
        if self._db is None:
            # isolation_level=None: autocommit; writes use explicit BEGIN IMMEDIATE.
            self._db = await connect(self.path, _SCHEMA, isolation_level=None)
        return self._db

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def load(self, session: str) -> list[Message]:
        """Every stored message of `session`, oldest first."""
        async with self._lock:
            db = await self._connect()
            async with db.execute(
                "SELECT data FROM messages WHERE session = ? ORDER BY id", (session,)
            ) as cursor:
                return [json.loads(row[0]) async for row in cursor]

    async def count(self, session: str) -> int:
        async with self._lock:
            db = await self._connect()
            async with db.execute(
                "SELECT count(*) FROM messages WHERE session = ?", (session,)
            ) as cursor:
                row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def append(
        self, session: str, messages: Sequence[Message], *, keep: int | None = None
    ) -> None:
        """Add `messages` in one transaction, then prune to the newest `keep` (turn boundary).

        Shielded: once started, the write completes even if the caller is cancelled, so the
        shared connection is never left inside a transaction.

        :raises StorageError: if the write failed (disk full, I/O error); nothing was kept.
        """
        now = time.time()
        rows = [
            (session, str(m.get("role")), json.dumps(m, ensure_ascii=False), now) for m in messages
        ]
        await asyncio.shield(self._write(session, rows, keep))

    async def _write(
        self, session: str, rows: list[tuple[str, str, str, float]], keep: int | None
    ) -> None:
        async with self._lock:
            db = await self._connect()
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    await db.executemany(
                        "INSERT INTO messages (session, role, data, created) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    if keep is not None:
                        await self._prune(db, session, keep)
                    await db.execute("COMMIT")
                except BaseException:
                    # A full disk makes SQLite roll back by itself; a second ROLLBACK would
                    # raise "no transaction is active" and hide the real error.
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if self.on_write is not None:
                    self.on_write(exc)
                raise StorageError(f"{self.path}: {storage_error_text(exc)}") from exc
        if self.on_write is not None:
            self.on_write(None)

    @staticmethod
    async def _prune(db: aiosqlite.Connection, session: str, keep: int) -> None:
        async with db.execute(
            "SELECT id, role FROM messages WHERE session = ? ORDER BY id", (session,)
        ) as cursor:
            rows: list[Any] = list(await cursor.fetchall())
        start = trim_start([r[1] for r in rows], keep)
        if start:
            first_kept = rows[start][0] if start < len(rows) else rows[-1][0] + 1
            await db.execute(
                "DELETE FROM messages WHERE session = ? AND id < ?", (session, first_kept)
            )

    async def clear(self, session: str) -> None:
        """Forget `session` (the `/new` command)."""
        async with self._lock:
            db = await self._connect()
            await db.execute("DELETE FROM messages WHERE session = ?", (session,))
