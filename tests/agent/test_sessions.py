"""The SQLite session store and history trimming."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picobot.core.errors import StorageError
from picobot.storage.sessions import (
    DB_NAME,
    SCHEMA_VERSION,
    SessionInfo,
    SessionStore,
    trim_history,
    trim_start,
    visible_history,
)


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


async def test_a_turn_that_loads_before_it_appends_prunes_the_same(tmp_path: Path) -> None:
    # `load` remembers the roles, so `append` skips the prune's read when nothing is cut.
    async with SessionStore.in_dir(tmp_path) as store:
        await store.append("s", [msg("assistant", "a scheduled reminder")])
        for i in range(5):
            await store.load("s")
            await store.append("s", [msg("user", f"u{i}"), msg("assistant", f"a{i}")], keep=5)
            kept = [m["content"] for m in await store.load("s")]
            if i == 0:  # under the limit, the history still starts at a user message
                assert kept == ["u0", "a0"]
        assert kept == ["u3", "a3", "u4", "a4"]
        await store.load("s")
        await store.clear("s")  # forgets what `load` saw
        await store.append(
            "s", [msg("assistant", "x"), msg("user", "u"), msg("assistant", "a")], keep=5
        )
        assert [m["content"] for m in await store.load("s")] == ["u", "a"]


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
        pages = await db.run(lambda c: c.execute("PRAGMA page_count").fetchone()[0], write=False)
        # SQLite's own "disk full":
        await db.run(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"), write=False)
        with pytest.raises(StorageError, match="disk full"):  # not "cannot rollback"
            await store.append("s", [msg("user", "x" * 100_000), msg("assistant", "lost")])
        assert isinstance(outcomes[-1], sqlite3.Error)
        assert [m["content"] for m in await store.load("s")] == ["before", "ok"]  # no half turn
        await db.run(lambda c: c.execute("PRAGMA max_page_count = 1073741823"), write=False)
        await store.append("s", [msg("user", "after"), msg("assistant", "ok")])
        assert outcomes[-1] is None
    assert (tmp_path / DB_NAME).stat().st_mode & 0o777 == 0o600


async def test_notes_are_in_the_transcript_but_never_reach_the_model(tmp_path: Path) -> None:
    async with SessionStore.in_dir(tmp_path) as store:
        await store.append("a", [msg("user", "hi"), msg("assistant", "hello")])
        await store.append_note("a", [msg("user", "/status"), msg("assistant", "Model: x")])
        await store.append("a", [msg("user", "again"), msg("assistant", "yes")], keep=2)

        assert [m["content"] for m in await store.load("a")] == ["again", "yes"]
        assert await store.count("a") == 2
        transcript = await store.transcript("a")
    # The prune cut the notes older than the kept turn too.
    assert [m["content"] for m in transcript] == ["again", "yes"]


async def test_sessions_are_listed_newest_first_with_their_first_message_as_title(
    tmp_path: Path,
) -> None:
    async with SessionStore.in_dir(tmp_path) as store:
        await store.append_note("web:a", [msg("user", "/help"), msg("assistant", "Commands")])
        await store.append("web:a", [msg("user", "  \nPlan a trip\nto Rome"), msg("assistant")])
        await store.append("web:b", [msg("user", "x" * 200), msg("assistant")])
        await store.append("telegram:1", [msg("user", "elsewhere")])
        await store.append("web:a", [msg("user", "later"), msg("assistant")])

        listed = await store.sessions("web:")
        assert [(s.key, s.title) for s in listed] == [
            ("web:a", "Plan a trip"),
            ("web:b", "x" * 79 + "…"),
        ]
        assert listed[0].updated >= listed[1].updated and listed[0].created <= listed[0].updated
        assert await store.rename("web:b", "Renamed") is True
        assert await store.rename("web:nope", "x") is False
        await store.clear("web:a")
        assert [(s.key, s.title) for s in await store.sessions("web:")] == [("web:b", "Renamed")]
        assert await store.transcript("web:a") == []


async def test_an_existing_database_is_migrated_and_keeps_its_history(tmp_path: Path) -> None:
    # A sessions.db as the first release wrote it: the messages table only, user_version 0.
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL,"
            " role TEXT NOT NULL, data TEXT NOT NULL, created REAL NOT NULL);"
        )
        for i, (session, role, text) in enumerate(
            [
                ("web:old", "user", "first question"),
                ("web:old", "assistant", "answer"),
                ("web:old", "user", "second"),
            ]
        ):
            data = json.dumps({"role": role, "content": text})
            db.execute("INSERT INTO messages VALUES (NULL, ?, ?, ?, ?)", (session, role, data, i))

    async with SessionStore(path) as store:
        assert [m["content"] for m in await store.load("web:old")] == [
            "first question",
            "answer",
            "second",
        ]
        assert await store.sessions("web:") == [SessionInfo("web:old", "first question", 0, 2)]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    async with SessionStore(path) as store:  # opening again does not migrate twice
        assert len(await store.sessions()) == 1


def test_visible_history_shows_texts_notes_and_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "time", "arguments": "{}"}}
    shown = visible_history(
        [
            msg("user", "what time?"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
            msg("assistant", "It is noon."),
            {"role": "user", "content": "/status", "note": True},
        ]
    )
    assert shown == [
        msg("user", "what time?"),
        {"role": "tool", "name": "time", "arguments": "{}", "content": "12:00", "error": False},
        msg("assistant", "It is noon."),
        {"role": "user", "content": "/status", "note": True},
    ]
