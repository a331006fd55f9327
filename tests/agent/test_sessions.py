"""The SQLite session store and history trimming."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picobot.core.errors import StorageError
from picobot.storage.sessions import DB_NAME, SessionStore, trim_history, trim_start


def msg(role: str, content: str = "x") -> dict[str, str]:
    return {"role": role, "content": content}


@given(st.lists(st.sampled_from(["user", "assistant", "tool"]), max_size=30), st.integers(1, 30))
def test_trim_never_exceeds_the_limit_nor_starts_with_a_tool_result(
    roles: list[str], limit: int
) -> None:
    start = trim_start(roles, limit)

    kept = roles[start:]
    assert len(kept) <= limit
    assert not kept or kept[0] != "tool"
    if "user" in roles[len(roles) - min(limit, len(roles)) :]:
        assert kept[0] == "user"  # cut at a turn boundary when one is in the window


def test_trim_drops_whole_oldest_turns() -> None:
    history = [
        msg("user", "1"),
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"},
        msg("assistant", "a1"),
        msg("user", "2"),
        msg("assistant", "a2"),
    ]

    assert trim_history(history, 5) == history[4:]
    assert trim_history(history, 6) == history
    assert trim_history(history, 4) == history[4:]  # never starts at the orphan tool result
    assert trim_history(history, 1) == history[5:]  # no user in the window: no tool first


async def test_history_survives_reopening(tmp_path: Path) -> None:
    async with SessionStore.in_dir(tmp_path) as store:
        await store.append("a", [msg("user", "hi"), msg("assistant", "hello")])
        await store.append("b", [msg("user", "other")])

    async with SessionStore(tmp_path / DB_NAME) as store:
        assert await store.load("a") == [msg("user", "hi"), msg("assistant", "hello")]
        assert await store.count("b") == 1
        await store.clear("a")
        assert await store.load("a") == []
        assert await store.count("b") == 1


async def test_append_prunes_at_a_turn_boundary(tmp_path: Path) -> None:
    async with SessionStore.in_dir(tmp_path) as store:
        for i in range(5):
            await store.append("s", [msg("user", f"u{i}"), msg("assistant", f"a{i}")], keep=5)

        kept = await store.load("s")

    assert [m["content"] for m in kept] == ["u3", "a3", "u4", "a4"]


async def test_unicode_and_tool_calls_round_trip() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
        ],
    }
    async with SessionStore() as store:
        await store.append("s", [msg("user", "héllo 👋"), message])
        assert await store.load("s") == [msg("user", "héllo 👋"), message]


async def test_a_full_disk_fails_the_write_cleanly_and_keeps_the_history(tmp_path: Path) -> None:
    outcomes: list[BaseException | None] = []
    async with SessionStore.in_dir(tmp_path, on_write=outcomes.append) as store:
        await store.append("s", [msg("user", "before"), msg("assistant", "ok")])
        db = store._db
        assert db is not None
        async with db.execute("PRAGMA page_count") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        await db.execute(f"PRAGMA max_page_count = {row[0]}")  # SQLite's own "disk full"
        with pytest.raises(StorageError, match="disk full"):  # not "cannot rollback"
            await store.append("s", [msg("user", "x" * 100_000), msg("assistant", "lost")])
        assert isinstance(outcomes[-1], sqlite3.Error)
        assert [m["content"] for m in await store.load("s")] == ["before", "ok"]  # no half turn
        await db.execute("PRAGMA max_page_count = 1073741823")
        await store.append("s", [msg("user", "after"), msg("assistant", "ok")])
        assert outcomes[-1] is None
    assert (tmp_path / DB_NAME).stat().st_mode & 0o777 == 0o600
