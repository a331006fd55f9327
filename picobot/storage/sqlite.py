"""Opening picobot's SQLite databases (sessions, outbox, schedule) the same way; `Database`:
one connection whose writes are grouped into transactions."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from picobot.core import metrics
from picobot.core.errors import StartupError
from picobot.storage.datadir import private_file

log = logging.getLogger("picobot.storage")

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # NORMAL with WAL: durable across a process kill (not a power cut), and fast.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",  # another process (e.g. `picobot chat`) may share the file
)


async def connect(path: str | Path, schema: str, **kwargs: Any) -> aiosqlite.Connection:
    """Open `path` (creating its folder), set the pragmas, apply `schema`.

    :raises StartupError: naming the file if it cannot be opened or is not a database;
        nothing is left open then.
    """
    try:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_file(Path(path))  # before SQLite creates it world-readable
        db = await aiosqlite.connect(path, **kwargs)
    except (OSError, sqlite3.Error) as exc:
        raise _unusable(path, exc) from None
    try:
        for pragma in PRAGMAS:
            await db.execute(pragma)
        await db.executescript(schema)
        await db.commit()
    except sqlite3.Error as exc:
        await db.close()
        raise _unusable(path, exc) from None
    except BaseException:
        await db.close()
        raise
    return db


Op = Callable[[sqlite3.Connection], Any]
# Told after every transaction that wrote (None) or failed (the error): readiness follows the disk.
WriteWatcher = Callable[[BaseException | None], None]


class Database:
    """One SQLite connection, its writes grouped into transactions.

    `run(op)` queues `op` (a function of the connection). The ops queued in one turn of the
    event loop form one transaction: run one after another, then committed once. So many
    writers share one commit. `run` returns once the commit covering its op completed (durable
    then: WAL with synchronous=NORMAL survives a process kill).

    The transactions run in the event loop's thread: a commit in WAL mode only appends to the
    WAL file (no fsync), which costs less than handing the work to a thread and back (the GIL
    changes hands at every statement). The slow part, the checkpoint that copies the WAL into
    the database and fsyncs, runs in a thread of its own (`Checkpoints`).

    If an op or the commit fails, the transaction is rolled back and every op in it fails with
    that error: nothing of them was kept. An op runs even if its caller was cancelled meanwhile
    (a write, once queued, is never half done). `on_write` hears of every transaction that
    wrote or failed, once.
    """

    def __init__(
        self,
        path: str | Path,
        schema: str,
        *,
        name: str,
        setup: Op | None = None,
        on_write: WriteWatcher | None = None,
    ) -> None:
        self.path = path
        self.on_write = on_write
        self._schema = schema
        self._setup = setup  # run once after the schema (migrations)
        self._commits = metrics.SQLITE_COMMITS.labels(name)
        self._conn: sqlite3.Connection | None = None
        self._queue: list[tuple[Op, bool, asyncio.Future[Any] | None]] = []
        self._scheduled = False  # a transaction is about to run
        self._checkpoints = Checkpoints(path, then=self._after_checkpoint)

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        """Open the file (creating its folder), set the pragmas, apply the schema.

        :raises StartupError: naming the file if it cannot be opened or is not a database;
            nothing is left open then.
        """
        if self._conn is None:
            self._conn = await asyncio.to_thread(self._connect)  # migrations may take a while

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                private_file(Path(path))  # before SQLite creates it world-readable
            # Autocommit: transactions are begun and committed here, explicitly.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(path, exc) from None
        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # `Checkpoints` does it, elsewhere
            # A WAL that grew past this (a burst) is cut back when it starts over.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_PAGES * 4096}")
            conn.executescript(self._schema)
            if self._setup is not None:
                self._setup(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise _unusable(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Run what is queued, then close the connection (a last checkpoint on the way)."""
        await self._checkpoints.close()
        if self._queue:
            self._transact_queued()
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    async def run(self, op: Op, *, write: bool = True) -> Any:
        """Run `op(connection)` in the next transaction; its result once that committed.

        `write=False`: `op` only reads (a group of reads needs no transaction).

        :raises RuntimeError: if the database is not open.
        :raises sqlite3.Error: if `op` or its transaction's commit failed (nothing was kept).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(loop, op, write, future)
        return await future

    def run_soon(self, op: Op) -> None:
        """Queue the write `op` for the next transaction, and wait for nothing: for records
        whose failure the caller would only ignore (`on_write` hears of it).

        :raises RuntimeError: if the database is not open.
        """
        self._enqueue(asyncio.get_running_loop(), op, True, None)

    def _enqueue(
        self,
        loop: asyncio.AbstractEventLoop,
        op: Op,
        write: bool,
        future: asyncio.Future[Any] | None,
    ) -> None:
        if self._conn is None:
            raise RuntimeError(f"{self.path} is not open")
        self._queue.append((op, write, future))
        if not self._scheduled and not self._checkpoints.running:
            self._scheduled = True
            loop.call_soon(self._transact_queued)  # ops queued in this turn of the loop join in

    def _after_checkpoint(self) -> None:
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._transact_queued)

    def _transact_queued(self) -> None:
        self._scheduled = False
        if self._checkpoints.running:
            return  # after it (`_after_checkpoint`): see `Checkpoints`
        group, self._queue = self._queue, []
        if not group:
            return
        writes = any(write for _, write, _ in group)
        try:
            results = self._transact(group, writes)
        except Exception as exc:
            if self.on_write is not None and isinstance(exc, sqlite3.Error):
                self.on_write(exc)
            for _, _, future in group:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        if writes:
            self._commits.inc()
            self._checkpoints.committed()
            if self.on_write is not None:
                self.on_write(None)
        for (_, _, future), result in zip(group, results, strict=True):
            if future is not None and not future.done():
                future.set_result(result)

    def _transact(
        self, group: list[tuple[Op, bool, asyncio.Future[Any] | None]], writes: bool
    ) -> Any:
        """The group's ops in one transaction, committed."""
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"{self.path} is not open")
        try:
            if writes:
                conn.execute("BEGIN IMMEDIATE")
            results = [op(conn) for op, _, _ in group]
            if writes:
                conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back by itself (a full disk): a second ROLLBACK would
            # raise "no transaction is active" and hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results


WAL_PAGES = 1000  # pages the WAL may grow to between checkpoints (SQLite's own default)
CHECKPOINT_EVERY = 100  # commits between checkpoints, at most


class Checkpoints:
    """Copies the WAL back into the database now and then, in a thread of its own (it fsyncs,
    which must not stall the event loop).

    Meanwhile the database's transactions wait (the loop does not): a checkpoint that new
    commits keep outrunning never completes, and SQLite starts the WAL over only after one
    did, so the file would grow without end. `then` is told when it is over. The commits
    between two checkpoints follow the pages each wrote last time: about `WAL_PAGES` in all.
    """

    def __init__(self, path: str | Path, *, then: Callable[[], None]) -> None:
        self.path = path
        self._then = then
        self._every = self._due = CHECKPOINT_EVERY
        self._running: asyncio.Future[int] | None = None
        self._conn: sqlite3.Connection | None = None  # its own, used by one thread at a time
        self._thread: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        return self._running is not None

    def committed(self) -> None:
        self._due -= 1
        if self._due > 0 or self._running is not None or self._closed:
            return
        if str(self.path) == ":memory:":
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        loop = asyncio.get_running_loop()
        self._running = running = loop.run_in_executor(self._thread, self._checkpoint)
        running.add_done_callback(self._done)

    def _checkpoint(self) -> int:
        """The WAL's size in pages, now copied back."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=5000")
        _, pages, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(pages)

    def _done(self, running: asyncio.Future[int]) -> None:
        self._running = None
        if running.cancelled():
            pass
        elif running.exception() is not None:
            # Nothing is lost (the WAL keeps it); the next checkpoint tries again.
            log.warning("%s: checkpoint failed: %s", self.path, running.exception())
        elif pages := running.result():
            every = self._every * WAL_PAGES // pages
            self._every = max(1, min(CHECKPOINT_EVERY, 2 * self._every, every))
        self._due = self._every
        self._then()

    async def close(self) -> None:
        self._closed = True  # the connection's own close checkpoints one last time
        if self._running is not None:
            await asyncio.wait([self._running])
        if self._thread is not None:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
            self._thread.shutdown(wait=False)
            self._thread = None


def _unusable(path: str | Path, exc: BaseException) -> StartupError:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT"):
        return StartupError(
            f"{path} is not a usable SQLite database ({exc}); move it away to start afresh, "
            "or restore a backup"
        )
    if name.startswith("SQLITE_READONLY") or getattr(exc, "errno", None) in (1, 13, 30):
        return StartupError(f"cannot write {path} ({exc}); make data_dir writable by this user")
    return StartupError(f"cannot open {path}: {exc}")
