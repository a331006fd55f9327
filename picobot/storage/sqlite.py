"""Opening picobot's SQLite databases (sessions, outbox) the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # NORMAL with WAL: durable across a process kill (not a power cut), and fast.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",  # another process (e.g. `picobot chat`) may share the file
)


async def connect(path: str | Path, schema: str, **kwargs: Any) -> aiosqlite.Connection:
    """Open `path` (creating its folder), set the pragmas, apply `schema`.

    :raises sqlite3.Error: if the file cannot be opened; nothing is left open then.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, **kwargs)
    try:
        for pragma in PRAGMAS:
            await db.execute(pragma)
        await db.executescript(schema)
        await db.commit()
    except BaseException:
        await db.close()
        raise
    return db
