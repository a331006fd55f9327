"""`Database`: writes grouped into one transaction per turn of the loop; checkpoints elsewhere."""

import asyncio
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from picobot.storage import sqlite as sqlite_module
from picobot.storage.sqlite import Database

SCHEMA = "CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL);"


def insert(v: int) -> sqlite_module.Op:
    return lambda db: db.execute("INSERT INTO t (v) VALUES (?)", (v,)).rowcount


def commits() -> float:
    return REGISTRY.get_sample_value("picobot_sqlite_commits_total", {"db": "test"}) or 0.0


async def test_writes_queued_together_share_one_commit_and_all_persist(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", SCHEMA, name="test")
    await db.open()
    before = commits()
    assert await asyncio.gather(*(db.run(insert(i)) for i in range(50))) == [1] * 50
    assert commits() - before == 1
    await db.close()
    with sqlite3.connect(tmp_path / "x.db") as again:
        assert again.execute("SELECT count(*) FROM t").fetchone() == (50,)


async def test_a_failing_op_fails_its_whole_group_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", SCHEMA, name="test")
    await db.open()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (NULL)")  # NOT NULL

    results = await asyncio.gather(
        db.run(insert(1)), db.run(broken), db.run(insert(2)), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert await db.run(insert(3)) == 1  # the next group is fine
    rows = await db.run(lambda conn: conn.execute("SELECT v FROM t").fetchall(), write=False)
    assert rows == [(3,)]
    await db.close()


async def test_checkpoints_copy_the_wal_into_the_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 3)
    path = tmp_path / "x.db"
    db = Database(path, SCHEMA, name="test")
    await db.open()
    size = path.stat().st_size  # the schema is in the WAL only: no automatic checkpoints
    for i in range(3):
        await db.run(insert(i))
    running = db._checkpoints._running
    assert running is not None  # started by the third commit, in its own thread
    await running
    assert path.stat().st_size > size
    await db.close()


async def test_a_closed_database_refuses_work(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", SCHEMA, name="test")
    await db.open()
    await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.run(insert(1))


async def test_the_wal_starts_over_instead_of_growing_with_every_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 5)
    path = tmp_path / "x.db"
    db = Database(path, SCHEMA, name="test")
    await db.open()
    for i in range(400):  # one commit each, a few WAL pages each: ~5 MB without restarts
        await db.run(insert(i))
    wal = (tmp_path / "x.db-wal").stat().st_size
    assert wal < 200 * 1024
    await db.close()
