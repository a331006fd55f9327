"""Conversation history per session, in SQLite (WAL) under `data_dir`, surviving restarts.

A turn's messages are written in one transaction when the turn ends, so an aborted or failed
turn leaves the history as it was. Each write also prunes the session to its newest
`keep` messages, cut at a turn boundary (see `trim_history`).

Besides the model's messages, a session keeps *notes* (slash commands and their replies): the
user sees them in the history, the model never does. Each session has a row in ``sessions``
(title from its first message, last activity) for conversation lists.

Schema versions (``PRAGMA user_version``): 0 = messages only; 1 = the ``sessions`` table,
filled from the messages of an existing database when it is first opened.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

from picobot.core.errors import StorageError
from picobot.core.messages import Message
from picobot.storage.codec import decode, encode
from picobot.storage.datadir import storage_error_text
from picobot.storage.sqlite import Database, WriteWatcher

DB_NAME = "sessions.db"
T = TypeVar("T")

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
NOTE = "note"  # the role column of a note (the message keeps its own role in `data`)
TITLE_CHARS = 80
SCHEMA_VERSION = 1
MAX_LOADED = 1024  # sessions whose loaded roles are remembered until their append
_MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY,
    title   TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated);
INSERT OR IGNORE INTO sessions (session, title, created, updated)
    SELECT session,
           (SELECT substr(json_extract(m2.data, '$.content'), 1, 80) FROM messages m2
             WHERE m2.session = m.session AND m2.role = 'user' ORDER BY m2.id LIMIT 1),
           min(created), max(created)
    FROM messages m GROUP BY session;
""",
}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One conversation in a list: its key, title (None: no message yet) and timestamps."""

    key: str
    title: str | None
    created: float
    updated: float


def title_of(text: str) -> str | None:
    """A conversation's title: the first line of its first message, shortened."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(line) > TITLE_CHARS:
        line = line[: TITLE_CHARS - 1].rstrip() + "…"
    return line or None


def visible_history(messages: Sequence[Message]) -> list[Message]:
    """The conversation as the user saw it, oldest first: user and assistant texts (with the
    ``attachments`` references of the images sent), notes (``"note": True``) and tool calls
    (``{"role": "tool", "name", "arguments", "content", "error"}``, in the order they ran)."""
    calls: dict[str, tuple[str, str]] = {}
    shown: list[Message] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        for call in m.get("tool_calls") or ():
            fn = call.get("function", {})
            calls[str(call.get("id"))] = (str(fn.get("name")), str(fn.get("arguments") or ""))
        if role == "tool":
            name, arguments = calls.get(str(m.get("tool_call_id")), ("?", ""))
            text = str(content or "")
            shown.append(
                {
                    "role": "tool",
                    "name": name,
                    "arguments": arguments,
                    "content": text,
                    "error": text.startswith("Error:"),
                }
            )
        elif role in ("user", "assistant") and isinstance(content, str):
            if not content.strip() and not m.get("attachments"):
                continue
            entry: Message = {"role": role, "content": content}
            if m.get("note"):
                entry["note"] = True
            if m.get("attachments"):  # references to the media store (the images sent)
                entry["attachments"] = m["attachments"]
            shown.append(entry)
    return shown


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


class HistoryStore(Protocol):
    """Where conversation history lives: SQLite here, Redis in cluster mode
    (`picobot.cluster.sessions`). Same calls, same meaning."""

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def load(self, session: str) -> list[Message]: ...

    async def transcript(self, session: str) -> list[Message]: ...

    async def count(self, session: str) -> int: ...

    async def append(
        self, session: str, messages: Sequence[Message], *, keep: int | None = None
    ) -> None: ...

    async def append_note(self, session: str, messages: Sequence[Message]) -> None: ...

    async def clear(self, session: str) -> None: ...

    async def sessions(self, prefix: str = "", *, limit: int = 200) -> list[SessionInfo]: ...

    async def rename(self, session: str, title: str) -> bool: ...


class SessionStore:
    """Messages per session key, oldest first. Opens lazily; `aclose()` when done.

    One connection (`Database`), shared by every session: each write is one op of a grouped
    transaction (the writes of many turns share one commit), so a turn's messages are kept
    all together or not at all.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        on_write: WriteWatcher | None = None,
    ) -> None:
        self.path = path
        self._db = Database(path, _SCHEMA, name="sessions", setup=_migrate, on_write=on_write)
        self._lock = asyncio.Lock()  # opening
        self._closed = False
        # The roles of a session as `load` last read them, until its next `append`: a turn
        # loads, then appends, so the prune's read is skipped when nothing is to be cut.
        self._loaded: dict[str, list[str]] = {}

    @classmethod
    def in_dir(
        cls,
        data_dir: str | Path,
        *,
        on_write: WriteWatcher | None = None,
    ) -> SessionStore:
        return cls(Path(data_dir) / DB_NAME, on_write=on_write)

    async def open(self) -> None:
        """Open the database (idempotent).

        :raises RuntimeError: if the store was closed.
        :raises StartupError: if the file cannot be opened.
        """
        await self._connect()

    async def _connect(self) -> Database:
        if self._closed:
            raise RuntimeError("the session store is closed")
        if not self._db.is_open:
            async with self._lock:
                await self._db.open()
        return self._db

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            await self._db.close()

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

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        db = await self._connect()
        result: T = await db.run(op, write=False)
        return result

    async def load(self, session: str) -> list[Message]:
        """Every stored message of `session` for the model (no notes), oldest first."""
        messages = await self._select(session, "AND role != 'note'")
        if len(self._loaded) >= MAX_LOADED:  # loads never followed by an append
            self._loaded.clear()
        self._loaded[session] = [str(m.get("role")) for m in messages]
        return messages

    async def transcript(self, session: str) -> list[Message]:
        """Every stored message of `session`, notes included (``"note": True``), oldest first."""
        return await self._select(session, "")

    async def _select(self, session: str, where: str) -> list[Message]:
        sql = f"SELECT data FROM messages WHERE session = ? {where} ORDER BY id"
        rows = await self._read(lambda db: db.execute(sql, (session,)).fetchall())
        return [decode(row[0]) for row in rows]

    async def count(self, session: str) -> int:
        """How many messages the model sees in `session`."""
        sql = "SELECT count(*) FROM messages WHERE session = ? AND role != 'note'"
        row = await self._read(lambda db: db.execute(sql, (session,)).fetchone())
        return int(row[0]) if row else 0

    async def append(
        self, session: str, messages: Sequence[Message], *, keep: int | None = None
    ) -> None:
        """Add `messages` in one transaction, then prune to the newest `keep` (turn boundary).

        Once started, the write completes even if the caller is cancelled.

        :raises StorageError: if the write failed (disk full, I/O error); nothing was kept.
        """
        now = time.time()
        rows = [(session, str(m.get("role")), encode(m), now) for m in messages]
        first = next((m.get("content") for m in messages if m.get("role") == "user"), None)
        title = title_of(first) if isinstance(first, str) else None
        loaded = self._loaded.pop(session, None)
        if keep is not None and loaded is not None:
            # Nothing to cut (as the prune would find, unless another process wrote meanwhile:
            # then the next prune, one turn later, catches up).
            if trim_start([*loaded, *(row[1] for row in rows)], keep) == 0:
                keep = None
        await self._write(functools.partial(_append, session, rows, keep, title, now))

    async def append_note(self, session: str, messages: Sequence[Message]) -> None:
        """Add messages only the user sees (a command and its reply); the model never does."""
        now = time.time()
        rows = [(session, NOTE, encode({**m, "note": True}), now) for m in messages]
        await self._write(functools.partial(_append, session, rows, None, None, now))

    async def _write(self, op: Callable[[sqlite3.Connection], object]) -> object:
        db = await self._connect()
        try:
            return await db.run(op)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {storage_error_text(exc)}") from exc

    async def clear(self, session: str) -> None:
        """Forget `session`: its messages, notes and title (`/new`, deleting a conversation)."""

        def clear(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM messages WHERE session = ?", (session,))
            db.execute("DELETE FROM sessions WHERE session = ?", (session,))

        self._loaded.pop(session, None)
        await self._write(clear)

    async def sessions(self, prefix: str = "", *, limit: int = 200) -> list[SessionInfo]:
        """Sessions whose key starts with `prefix`, most recently active first."""
        sql = (
            "SELECT session, title, created, updated FROM sessions "
            "WHERE substr(session, 1, ?) = ? ORDER BY updated DESC, session LIMIT ?"
        )
        rows = await self._read(lambda db: db.execute(sql, (len(prefix), prefix, limit)).fetchall())
        return [SessionInfo(*row) for row in rows]

    async def rename(self, session: str, title: str) -> bool:
        """Set the title of `session`; False if there is no such session."""
        sql = "UPDATE sessions SET title = ? WHERE session = ?"
        changed = await self._write(lambda db: db.execute(sql, (title, session)).rowcount)
        return bool(changed)


def _append(
    session: str,
    rows: list[tuple[str, str, str, float]],
    keep: int | None,
    title: str | None,
    now: float,
    db: sqlite3.Connection,
) -> None:
    """In a transaction: a turn's messages, the session's row, the prune."""
    db.executemany("INSERT INTO messages (session, role, data, created) VALUES (?, ?, ?, ?)", rows)
    db.execute(
        "INSERT INTO sessions (session, title, created, updated)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (session) DO UPDATE SET"
        " updated = excluded.updated,"
        " title = coalesce(sessions.title, excluded.title)",
        (session, title, now, now),
    )
    if keep is not None:
        _prune(db, session, keep)


def _prune(db: sqlite3.Connection, session: str, keep: int) -> None:
    rows = db.execute(
        "SELECT id, role FROM messages WHERE session = ? AND role != 'note' ORDER BY id",
        (session,),
    ).fetchall()
    start = trim_start([r[1] for r in rows], keep)
    if start:
        first_kept = rows[start][0] if start < len(rows) else rows[-1][0] + 1
        db.execute("DELETE FROM messages WHERE session = ? AND id < ?", (session, first_kept))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older database up to `SCHEMA_VERSION`, one step per transaction."""
    row = db.execute("PRAGMA user_version").fetchone()
    version = int(row[0]) if row else 0
    for target in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _MIGRATIONS[target].split(";\n")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
