"""The durable outbox: what was accepted survives a crash or restart (SQLite, WAL, in data_dir).

Two records, one database:

- **inbound**: every accepted message, by its stable id, before the platform gets our ack.
  A replayed platform event (same id) is recognised and dropped. A message whose turn never
  finished (crash, kill) is run again once after a restart — unless a reply to it is already
  in the outbox, which is then delivered instead.
- **outbound**: every reply, before the lane delivers it, with the chunks already acknowledged
  by the platform (and their message ids). A restart resumes each pending reply at its next
  chunk, in order per chat; so a hard kill duplicates at most the one chunk in flight. A
  delivered reply is pruned; one that failed permanently stays as a dead letter with its error.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from picobot.core.errors import StorageError
from picobot.core.messages import InboundMessage, OutboundMessage, reply_to
from picobot.storage.codec import decode, dump, load_inbound, load_outbound
from picobot.storage.datadir import storage_error_text
from picobot.storage.journal import FinishedInOutbox
from picobot.storage.records import DeadLetter, Pending, Placeholder
from picobot.storage.sqlite import Database, WriteWatcher

__all__ = ["DeadLetter", "FinishedInOutbox", "Outbox", "Pending", "Placeholder"]

DB_NAME = "outbox.db"
# A message whose turn was cut by a crash (or a SIGKILL) this often is given up: dead letter +
# log. Turns that never started, and turns a graceful shutdown cut, do not count.
MAX_INBOUND_ATTEMPTS = 3
KEEP_INBOUND_SECONDS = 7 * 24 * 3600  # replay ids remembered this long
_ANSWERED_KEPT = 10_000  # answered ids kept in memory for `finished` (see there)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    channel  TEXT NOT NULL,
    chat_id  TEXT NOT NULL,
    data     TEXT NOT NULL,
    sent     TEXT NOT NULL DEFAULT '{}',
    state    TEXT NOT NULL DEFAULT 'pending',
    error    TEXT,
    created  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbound_state ON outbound (state, seq);
CREATE INDEX IF NOT EXISTS outbound_chat ON outbound (channel, chat_id, state, seq);
CREATE TABLE IF NOT EXISTS inbound (
    id        TEXT PRIMARY KEY,
    data      TEXT NOT NULL,
    state     TEXT NOT NULL DEFAULT 'received',
    attempts  INTEGER NOT NULL DEFAULT 1,
    placeholder TEXT,
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inbound_state ON inbound (state);
"""


log = logging.getLogger("picobot.outbox")


class Outbox:
    """The `OutboxStore` in SQLite, with the inbound journal (replays, unfinished turns).

    One SQLite connection shared by the daemon (`Database`).

    Commits are grouped: a statement returns once a commit covering it has completed, and the
    statements queued in the same turn of the event loop share it (one WAL commit for many
    writers, instead of one each).
    """

    def __init__(self, path: str | Path, *, on_write: WriteWatcher | None = None) -> None:
        self.path = Path(path)
        self._db = Database(self.path, _SCHEMA, name="outbox", on_write=on_write)
        # Inbound ids a delivered reply marked answered (and their placeholder forgotten): for
        # these, the turn's end has nothing left to record. Forgetting them costs a statement.
        self._answered: set[str] = set()

    @classmethod
    def in_dir(cls, data_dir: str | Path, *, on_write: WriteWatcher | None = None) -> Outbox:
        return cls(Path(data_dir) / DB_NAME, on_write=on_write)

    async def open(self) -> None:
        await self._db.open()

    async def aclose(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(
        self, sql: str, args: tuple[Any, ...] = (), *, write: bool = True
    ) -> list[tuple[Any, ...]]:
        """One statement; returns once a commit covering it completed.

        :raises StorageError: if it or its commit failed (disk full, I/O error): nothing of it
            was kept, nor of the statements sharing its commit (they fail too).
        """
        rows: list[tuple[Any, ...]] = await self._ops(_statement(sql, args), write=write)
        return rows

    async def _ops(self, op: Callable[[sqlite3.Connection], Any], *, write: bool = True) -> Any:
        """`op` in the next grouped transaction (see `_run`)."""
        if not self._db.is_open:
            raise RuntimeError("the outbox is not open")
        try:
            return await self._db.run(op, write=write)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {storage_error_text(exc)}") from exc

    # -- outbound -------------------------------------------------------------------------

    async def add(self, msg: OutboundMessage) -> None:
        """Record `msg` as pending (idempotent: a message already recorded keeps its progress)."""
        await self._run(
            "INSERT OR IGNORE INTO outbound (id, channel, chat_id, data, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (msg.id, msg.channel, msg.chat_id, dump(msg), time.time()),
        )

    async def chunk_sent(self, msg: OutboundMessage, index: int, platform_id: str) -> None:
        """The platform acknowledged chunk `index` of `msg` as `platform_id`."""
        await self._run(
            "UPDATE outbound SET sent = json_set(sent, '$.' || ?, ?) WHERE id = ?",
            (str(index), platform_id, msg.id),
        )

    async def delivered(self, msg: OutboundMessage) -> None:
        """Prune `msg`; its inbound message is answered (no replay after a restart).

        Queued, not waited for (as the turn journal's records): the lane goes on at once. Its
        next read of the outbox comes after this in the same queue; and should the write fail
        (the write watcher reports it), the reply is delivered again after a restart, as after
        a kill between the send and this record.
        """

        def prune(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM outbound WHERE id = ?", (msg.id,))
            if msg.in_reply_to:
                db.execute(
                    # The reply took the placeholder (edited it or removed it): forget its id.
                    "UPDATE inbound SET state = 'answered', placeholder = NULL"
                    " WHERE id = ? AND state = 'received'",
                    (msg.in_reply_to,),
                )

        self._db.run_soon(prune)
        if msg.in_reply_to:
            if len(self._answered) >= _ANSWERED_KEPT:  # ids whose turn never ends here
                self._answered.clear()
            self._answered.add(msg.in_reply_to)

    async def dead(self, msg: OutboundMessage, error: str) -> None:
        """Keep a permanently failed message, with its error, out of the delivery queue."""
        await self._run(
            "UPDATE outbound SET state = 'dead', error = ? WHERE id = ?", (error[:500], msg.id)
        )

    async def pending(self) -> list[Pending]:
        """Undelivered messages, oldest first (the order they were accepted in)."""
        rows = await self._run(
            "SELECT data, sent FROM outbound WHERE state = 'pending' ORDER BY seq", write=False
        )
        return [
            Pending(load_outbound(data), {int(k): v for k, v in decode(sent).items()})
            for data, sent in rows
        ]

    async def holds(self, msg_id: str) -> bool:
        """Whether `msg_id` was recorded and is not delivered yet (pending or a dead letter)."""
        return bool(await self._run("SELECT 1 FROM outbound WHERE id = ?", (msg_id,)))

    async def pending_chats(self) -> list[tuple[str, str, int]]:
        """(channel, chat id, count) of every chat with undelivered messages."""
        rows = await self._run(
            "SELECT channel, chat_id, COUNT(*) FROM outbound WHERE state = 'pending'"
            " GROUP BY channel, chat_id ORDER BY MIN(seq)",
            write=False,
        )
        return [(channel, chat_id, count) for channel, chat_id, count in rows]

    async def next_pending(
        self, channel: str, chat_id: str, exclude: Collection[str] = ()
    ) -> Pending | None:
        """The chat's oldest undelivered message whose id is not in `exclude`."""
        marks = ",".join("?" * len(exclude))
        rows = await self._run(
            "SELECT data, sent FROM outbound WHERE channel = ? AND chat_id = ?"
            f" AND state = 'pending' AND id NOT IN ({marks}) ORDER BY seq LIMIT 1",
            (channel, chat_id, *exclude),
            write=False,
        )
        if not rows:
            return None
        data, sent = rows[0]
        return Pending(load_outbound(data), {int(k): v for k, v in decode(sent).items()})

    async def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        rows = await self._run(
            "SELECT id, channel, chat_id, data, error, created FROM outbound"
            " WHERE state = 'dead' ORDER BY seq DESC LIMIT ?",
            (limit,),
            write=False,
        )
        return [
            DeadLetter(i, ch, chat, decode(data)["text"], err or "", created)
            for i, ch, chat, data, err, created in rows
        ]

    async def counts(self) -> dict[str, int]:
        rows = await self._run("SELECT state, COUNT(*) FROM outbound GROUP BY state", write=False)
        counts = {"pending": 0, "dead": 0}
        counts.update({state: n for state, n in rows})
        return counts

    # -- inbound --------------------------------------------------------------------------

    async def seen(self, msg: InboundMessage) -> bool:
        """Record an accepted inbound message; True if it was recorded before (a replay)."""
        sql = "INSERT OR IGNORE INTO inbound (id, data, created, attempts) VALUES (?, ?, ?, 0)"
        args = (msg.id, dump(msg), time.time())
        # The row count, not RETURNING: a third of the statement's cost less.
        inserted: int = await self._ops(lambda db: db.execute(sql, args).rowcount)
        return not inserted

    async def placeholder(self, record: Placeholder) -> None:
        """Remember the "Thinking…" message sent for `record.key` (on its inbound record).

        Queued, not waited for (as `delivered`): the lane goes on to the reply at once, whose
        records come after this one in the same queue. Lost to a kill (or a failed write, which
        the write watcher reports) it leaves the placeholder behind, as a kill between the send
        and a waited-for record would."""
        sql = "UPDATE inbound SET placeholder = ? WHERE id = ?"
        self._db.run_soon(_statement(sql, (record.message_id, record.key)))

    async def placeholders(self) -> list[Placeholder]:
        """Placeholders of turns that never finished."""
        rows = await self._run(
            "SELECT id, data, placeholder FROM inbound"
            " WHERE placeholder IS NOT NULL AND state IN ('received', 'answered')",
            write=False,
        )
        found = []
        for key, data, message_id in rows:
            msg = load_inbound(data)
            found.append(Placeholder(key, msg.channel, msg.chat_id, msg.thread, message_id))
        return found

    # The turn journal's records are queued, not waited for: the next transaction (in this
    # turn of the event loop, before the turn calls the model) takes them, and their caller
    # would ignore a failure, which the write watcher reports.

    async def finished(self, inbound_id: str) -> None:
        """The turn for `inbound_id` ended; it will not be run again."""
        if inbound_id in self._answered:
            # Answered (`delivered`) is done already: neither runs again, and no placeholder
            # is recorded after the reply that took it.
            self._answered.discard(inbound_id)
            return
        sql = "UPDATE inbound SET state = 'done', placeholder = NULL WHERE id = ?"
        self._db.run_soon(_statement(sql, (inbound_id,)))

    async def started(self, inbound_id: str) -> None:
        """A turn for `inbound_id` starts: one more attempt, should it never finish."""
        sql = "UPDATE inbound SET attempts = attempts + 1 WHERE id = ?"
        self._db.run_soon(_statement(sql, (inbound_id,)))

    async def interrupted(self, inbound_id: str) -> None:
        """A graceful shutdown cut the turn: not the turn's fault, so not an attempt."""
        sql = "UPDATE inbound SET attempts = max(0, attempts - 1) WHERE id = ?"
        self._db.run_soon(_statement(sql, (inbound_id,)))

    async def unfinished(self) -> list[InboundMessage]:
        """Messages to run again after a restart: accepted, not answered, no reply pending.

        One whose turn was cut `MAX_INBOUND_ATTEMPTS` times (crashes, kills) is given up: it
        is logged and kept as a dead letter, so `picobot status` shows it.
        """
        await self._run(
            "DELETE FROM inbound WHERE state != 'received' AND created < ?",
            (time.time() - KEEP_INBOUND_SECONDS,),
        )
        rows = await self._run(
            "UPDATE inbound SET state = 'abandoned' WHERE state = 'received' AND attempts >= ?"
            " RETURNING data, attempts",
            (MAX_INBOUND_ATTEMPTS,),
        )
        for data, attempts in rows:
            await self._give_up(load_inbound(data), attempts)
        rows = await self._run(
            "SELECT data, created FROM inbound WHERE state = 'received' AND id NOT IN"
            " (SELECT json_extract(data, '$.in_reply_to') FROM outbound"
            "  WHERE json_extract(data, '$.in_reply_to') IS NOT NULL)",
            write=False,
        )
        return [load_inbound(data) for data, _ in sorted(rows, key=lambda row: row[1])]

    async def _give_up(self, msg: InboundMessage, attempts: int) -> None:
        error = f"no reply: its turn was cut {attempts} times (crash or kill); gave up"
        log.error("gave up on message %s in %s:%s: %s", msg.id, msg.channel, msg.chat_id, error)
        letter = reply_to(msg, "")
        await self.add(letter)
        await self.dead(letter, error)


def _statement(sql: str, args: tuple[Any, ...]) -> Callable[[sqlite3.Connection], Any]:
    return lambda db: db.execute(sql, args).fetchall()
