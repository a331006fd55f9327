"""The durable schedule: one row per entry, in `schedule.db` beside the outbox (same pragmas).

An entry is deleted when a one-shot has been handed to the outbox, or moved to its next
occurrence when a recurring one has; so a kill at any point loses nothing. `EntryStore` is what
the scheduler needs from a store: this SQLite one, or Redis in cluster mode
(`picobot.cluster.schedule`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import aiosqlite

from picobot.storage.sqlite import connect

DB_NAME = "schedule.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    chat      TEXT NOT NULL,
    channel   TEXT NOT NULL,
    chat_id   TEXT NOT NULL,
    thread    TEXT,
    is_group  INTEGER NOT NULL DEFAULT 0,
    text      TEXT NOT NULL,
    cron      TEXT,
    run_agent INTEGER NOT NULL DEFAULT 0,
    due       REAL NOT NULL,
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_due ON entries (due);
CREATE INDEX IF NOT EXISTS entries_chat ON entries (chat);
"""

_COLUMNS = "id, channel, chat_id, thread, is_group, text, cron, run_agent, due, created"


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    channel: str
    chat_id: str
    thread: str | None
    is_group: bool
    text: str
    cron: str | None  # None: a one-shot
    run_agent: bool
    due: float  # epoch seconds of the next firing
    created: float

    @property
    def chat(self) -> str:
        """The chat that owns the entry (limits and `/cancel` are per chat)."""
        return chat_key(self.channel, self.chat_id)

    @property
    def session(self) -> str:
        """The conversation a `run_agent` entry's turn runs in (as `InboundMessage`)."""
        key = self.chat
        return f"{key}:{self.thread}" if self.thread else key


def chat_key(channel: str, chat_id: str) -> str:
    return f"{channel}:{chat_id}"


def _entry(row: tuple[Any, ...]) -> Entry:
    i, channel, chat_id, thread, is_group, text, cron, run_agent, due, created = row
    return Entry(
        i, channel, chat_id, thread, bool(is_group), text, cron, bool(run_agent), due, created
    )


class EntryStore(Protocol):
    """Where entries live. Requests (add, list, cancel) may come from any node; firing
    (`may_fire`, `fired`) only from the one that fires, which a cluster store fences."""

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def add(
        self,
        *,
        channel: str,
        chat_id: str,
        thread: str | None,
        is_group: bool,
        text: str,
        cron: str | None,
        run_agent: bool,
        due: float,
        limit: int,
    ) -> Entry | None:
        """The new entry, or None if its chat already has `limit` (checked atomically)."""
        ...

    async def get(self, entry_id: int) -> Entry | None: ...

    async def for_chat(self, chat: str) -> list[Entry]:
        """The chat's entries, soonest first."""
        ...

    async def due(self, now: float) -> list[Entry]:
        """Entries due at `now` or earlier, the most overdue first."""
        ...

    async def next_due(self, after: float) -> float | None:
        """The earliest due time later than `after` (None if there is none)."""
        ...

    async def delete(self, entry_id: int) -> bool:
        """Remove an entry (a cancel); False if it was not there."""
        ...

    async def may_fire(self, entry: Entry) -> bool:
        """Whether `entry` is still stored as read (not cancelled, not moved) and this node
        may fire it now (a cluster store: it still holds the scheduler lease)."""
        ...

    async def fired(self, entry: Entry, next_due: float | None) -> bool:
        """After a firing: delete `entry` (`next_due` None) or move it to `next_due`. False
        if nothing was written (it was cancelled meanwhile, or this node may no longer fire)."""
        ...

    async def count(self) -> int: ...


class ScheduleStore:
    """`EntryStore` in SQLite: one connection; statements are serialised by a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def in_dir(cls, data_dir: str | Path) -> ScheduleStore:
        return cls(Path(data_dir) / DB_NAME)

    async def open(self) -> None:
        if self._db is None:
            self._db = await connect(self.path, _SCHEMA)

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._db is None:
            raise RuntimeError("the schedule store is not open")
        async with self._lock:
            cursor = await self._db.execute(sql, args)
            rows = [tuple(row) for row in await cursor.fetchall()]
            await self._db.commit()
            return rows

    async def add(
        self,
        *,
        channel: str,
        chat_id: str,
        thread: str | None,
        is_group: bool,
        text: str,
        cron: str | None,
        run_agent: bool,
        due: float,
        limit: int,
    ) -> Entry | None:
        """Insert an entry unless its chat already has `limit`; None then (one statement, so
        two concurrent calls cannot both take the last place)."""
        rows = await self._run(
            f"INSERT INTO entries (chat, {_COLUMNS.removeprefix('id, ')})"
            " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            " WHERE (SELECT COUNT(*) FROM entries WHERE chat = ?) < ?"
            f" RETURNING {_COLUMNS}",
            (
                chat_key(channel, chat_id),
                channel,
                chat_id,
                thread,
                int(is_group),
                text,
                cron,
                int(run_agent),
                due,
                time.time(),
                chat_key(channel, chat_id),
                limit,
            ),
        )
        return _entry(rows[0]) if rows else None

    async def get(self, entry_id: int) -> Entry | None:
        rows = await self._run(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    async def for_chat(self, chat: str) -> list[Entry]:
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM entries WHERE chat = ? ORDER BY due, id", (chat,)
        )
        return [_entry(row) for row in rows]

    async def due(self, now: float) -> list[Entry]:
        """Entries due at `now` or earlier, the most overdue first."""
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM entries WHERE due <= ? ORDER BY due, id", (now,)
        )
        return [_entry(row) for row in rows]

    async def next_due(self, after: float) -> float | None:
        """The earliest due time later than `after` (None if there is none)."""
        rows = await self._run("SELECT MIN(due) FROM entries WHERE due > ?", (after,))
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def reschedule(self, entry_id: int, due: float) -> None:
        await self._run("UPDATE entries SET due = ? WHERE id = ?", (due, entry_id))

    async def delete(self, entry_id: int) -> bool:
        rows = await self._run("DELETE FROM entries WHERE id = ? RETURNING id", (entry_id,))
        return bool(rows)

    async def may_fire(self, entry: Entry) -> bool:
        rows = await self._run(
            "SELECT 1 FROM entries WHERE id = ? AND due = ?", (entry.id, entry.due)
        )
        return bool(rows)

    async def fired(self, entry: Entry, next_due: float | None) -> bool:
        if next_due is None:
            return await self.delete(entry.id)
        rows = await self._run(
            "UPDATE entries SET due = ? WHERE id = ? RETURNING id", (next_due, entry.id)
        )
        return bool(rows)

    async def count(self) -> int:
        rows = await self._run("SELECT COUNT(*) FROM entries")
        return int(rows[0][0])
