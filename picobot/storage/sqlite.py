"""Opening picobot's SQLite databases (sessions, outbox, schedule) the same way; `Database`:
one connection in a thread of its own, whose writes are grouped into transactions."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import aiosqlite

from picobot.core import metrics
from picobot.core.errors import StartupError
from picobot.storage.datadir import private_file

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


class Database:
    """One SQLite connection in a thread of its own, its writes grouped into transactions.

    `run(op)` queues `op` (a function of the connection, run in that thread). The ops queued
    while a transaction is in flight form the next one: run one after another in one thread
    hop, then committed once. So many writers share one commit and one hop, instead of a hop
    per statement and a commit each. `run` returns once the commit covering its op completed
    (durable then: WAL, synchronous=NORMAL, survives a process kill).

    If an op or the commit fails, the transaction is rolled back and every op in it fails with
    that error: nothing of them was kept. An op runs even if its caller was cancelled meanwhile
    (a write, once queued, is never half done).
    """

    def __init__(
        self,
        path: str | Path,
        schema: str,
        *,
        name: str,
        setup: Op | None = None,
    ) -> None:
        self.path = path
        self._schema = schema
        self._setup = setup  # run once after the schema (migrations)
        self._commits = metrics.SQLITE_COMMITS.labels(name)
        self._conn: sqlite3.Connection | None = None
        self._thread: _Thread | None = None
        self._queue: list[tuple[Op, bool, asyncio.Future[Any]]] = []
        self._busy = False  # a transaction is in flight or about to start
        self._idle: asyncio.Event | None = None  # set while nothing is queued or in flight

    @property
    def is_open(self) -> bool:
        return self._thread is not None

    async def open(self) -> None:
        """Open the file (creating its folder), set the pragmas, apply the schema.

        :raises StartupError: naming the file if it cannot be opened or is not a database;
            nothing is left open then.
        """
        if self._thread is not None:
            return
        thread = _Thread(asyncio.get_running_loop())
        try:
            self._conn = await thread.run(self._connect)
        except BaseException:
            thread.stop()
            raise
        self._thread = thread
        self._idle = asyncio.Event()
        self._idle.set()

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
        """Let what is queued finish, then close the connection."""
        thread = self._thread
        if thread is None:
            return
        assert self._idle is not None
        await self._idle.wait()
        self._thread = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await thread.run(conn.close)
        thread.stop()

    async def run(self, op: Op, *, write: bool = True) -> Any:
        """Run `op(connection)` in the next transaction; its result once that committed.

        `write=False`: `op` only reads (a group of reads needs no transaction).

        :raises RuntimeError: if the database is not open.
        :raises sqlite3.Error: if `op` or its transaction's commit failed (nothing was kept).
        """
        if self._thread is None:
            raise RuntimeError(f"{self.path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, write, future))
        if not self._busy:
            self._busy = True
            assert self._idle is not None
            self._idle.clear()
            loop.call_soon(self._start)  # ops queued in this turn of the loop join in
        return await future

    def _start(self) -> None:
        group, self._queue = self._queue, []
        assert self._thread is not None
        self._thread.call(
            functools.partial(self._transact, group), functools.partial(self._settle, group)
        )

    def _transact(self, group: list[tuple[Op, bool, asyncio.Future[Any]]]) -> list[Any]:
        """In the connection's thread: the group's ops in one transaction, committed."""
        conn = self._conn
        assert conn is not None
        writes = any(write for _, write, _ in group)
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

    def _settle(
        self,
        group: list[tuple[Op, bool, asyncio.Future[Any]]],
        results: list[Any] | None,
        exc: BaseException | None,
    ) -> None:
        if self._queue:
            self._start()  # what queued meanwhile: the next transaction, at once
        else:
            self._busy = False
            assert self._idle is not None
            self._idle.set()
        if exc is None:
            assert results is not None
            if any(write for _, write, _ in group):
                self._commits.inc()
            for (_, _, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
        else:
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)


Done = Callable[[Any, BaseException | None], None]


class _Thread:
    """A thread running calls in order; each outcome goes back to the loop as one callback
    (one wakeup of the loop per call: cheaper than an executor's futures)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: SimpleQueue[tuple[Callable[[], Any], Done] | None] = SimpleQueue()
        threading.Thread(target=self._work, name="sqlite", daemon=True).start()

    def call(self, fn: Callable[[], Any], done: Done) -> None:
        """Run `fn` in the thread, then `done(result, None)` or `done(None, error)` in the loop."""
        self._calls.put((fn, done))

    async def run(self, fn: Callable[[], Any]) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()
        self.call(fn, functools.partial(_resolve, future))
        return await future

    def stop(self) -> None:
        self._calls.put(None)

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, done = item
            try:
                outcome: tuple[Any, BaseException | None] = (fn(), None)
            except BaseException as exc:  # handed to the loop, raised there
                outcome = (None, exc)
            try:
                self._loop.call_soon_threadsafe(done, *outcome)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


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
