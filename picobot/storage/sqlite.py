"""Opening picobot's SQLite databases (sessions, outbox) the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

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
