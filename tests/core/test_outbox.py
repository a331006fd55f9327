import sqlite3
from pathlib import Path

import pytest

from picobot.core.messages import InboundMessage, Kind, OutboundMessage, Sender
from picobot.storage.outbox import MAX_INBOUND_ATTEMPTS, Outbox
from picobot.storage.records import Placeholder
from tests.outboxes import Outboxes


def inbound(i: int = 1) -> InboundMessage:
    return InboundMessage("tg", "c", Sender("u", "alice"), f"hi {i}", id=f"tg:{i}", thread="t")


def reply(text: str, in_reply_to: str | None = "tg:1") -> OutboundMessage:
    return OutboundMessage("tg", "c", text, in_reply_to=in_reply_to, metadata={"k": "v"})


async def test_pending_survives_a_reopen_in_order_with_progress(outboxes: Outboxes) -> None:
    async with outboxes.open() as box:
        first, second = reply("one"), reply("two")
        await box.add(first)
        await box.add(second)
        await box.add(first)  # idempotent
        await box.chunk_sent(first, 0, "m100")
        await box.chunk_sent(first, -1, "f1")  # a file upload
    async with outboxes.open() as box:
        pending = await box.pending()
        assert [p.message for p in pending] == [first, second]
        assert pending[0].sent == {0: "m100", -1: "f1"} and pending[1].sent == {}
        assert pending[0].message.kind is Kind.REPLY
        assert await box.counts() == {"pending": 2, "dead": 0}


async def test_delivered_is_pruned_and_dead_letters_are_kept(outboxes: Outboxes) -> None:
    async with outboxes.open() as box:
        ok, bad = reply("ok"), reply("bad")
        await box.add(ok)
        await box.add(bad)
        await box.delivered(ok)
        await box.dead(bad, "Forbidden: bot was blocked")
        assert await box.pending() == []
        assert await box.pending_chats() == []
        [letter] = await box.dead_letters()
        assert (letter.id, letter.text, letter.error) == (
            bad.id,
            "bad",
            "Forbidden: bot was blocked",
        )
        assert await box.counts() == {"pending": 0, "dead": 1}
        assert await box.holds(bad.id) and not await box.holds(ok.id)
        await box.chunk_sent(bad, 0, "late")  # no progress on a dead letter
        assert await box.pending() == []


async def test_each_chat_reads_back_its_oldest_reply_first(outboxes: Outboxes) -> None:
    async with outboxes.open() as box:
        a1, b1, a2, a3 = (
            OutboundMessage("tg", chat, text)
            for chat, text in (("a", "1"), ("b", "1"), ("a", "2"), ("a", "3"))
        )
        for msg in (a1, b1, a2, a3):
            await box.add(msg)
        assert await box.pending_chats() == [("tg", "a", 3), ("tg", "b", 1)]
        nxt = await box.next_pending("tg", "a")
        assert nxt is not None and nxt.message == a1
        nxt = await box.next_pending("tg", "a", exclude=[a1.id, a2.id])
        assert nxt is not None and nxt.message == a3
        assert await box.next_pending("tg", "a", exclude=[a1.id, a2.id, a3.id]) is None
        assert await box.next_pending("tg", "nobody") is None
        await box.delivered(a1)
        nxt = await box.next_pending("tg", "a")
        assert nxt is not None and nxt.message == a2
        # Ranked by their oldest undelivered reply.
        assert await box.pending_chats() == [("tg", "b", 1), ("tg", "a", 2)]


async def test_a_placeholder_is_kept_until_a_reply_took_it(outboxes: Outboxes) -> None:
    async with outboxes.open() as box:
        if isinstance(box, Outbox):
            await box.seen(inbound(1))  # SQLite keeps it on the inbound record
            await box.seen(inbound(2))
        await box.placeholder(Placeholder("tg:1", "tg", "c", "t", "ph1"))
        await box.placeholder(Placeholder("tg:2", "tg", "c", "t", "ph2"))
    async with outboxes.open() as box:
        assert sorted(await box.placeholders()) == [
            Placeholder("tg:1", "tg", "c", "t", "ph1"),
            Placeholder("tg:2", "tg", "c", "t", "ph2"),
        ]
        answer = reply("answer", in_reply_to="tg:1")
        await box.add(answer)
        await box.delivered(answer)
        assert await box.placeholders() == [Placeholder("tg:2", "tg", "c", "t", "ph2")]


async def test_replayed_inbound_is_recognised(tmp_path: Path) -> None:
    async with Outbox.in_dir(tmp_path) as box:
        assert not await box.seen(inbound())
        assert await box.seen(inbound())


async def test_unfinished_inbound_runs_again_until_its_turn_was_cut_too_often(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Outbox.in_dir(tmp_path) as box:
        await box.seen(inbound(1))
        await box.seen(inbound(2))
        await box.finished("tg:2")
    for _ in range(MAX_INBOUND_ATTEMPTS):  # each run starts its turn, then the daemon dies
        async with Outbox.in_dir(tmp_path) as box:
            assert await box.unfinished() == [inbound(1)]
            await box.started("tg:1")
    async with Outbox.in_dir(tmp_path) as box:
        assert await box.unfinished() == []
        # Given up, and said so: a log line and a dead letter `picobot status` shows.
        (letter,) = await box.dead_letters()
        assert (letter.channel, letter.chat_id) == ("tg", "c")
        assert f"cut {MAX_INBOUND_ATTEMPTS} times" in letter.error
        assert await box.counts() == {"pending": 0, "dead": 1}
    assert any("gave up on message tg:1 in tg:c" in r.getMessage() for r in caplog.records)


async def test_restarts_that_never_started_or_gracefully_cut_the_turn_are_not_attempts(
    tmp_path: Path,
) -> None:
    async with Outbox.in_dir(tmp_path) as box:
        await box.seen(inbound(1))
    for _ in range(MAX_INBOUND_ATTEMPTS + 2):
        async with Outbox.in_dir(tmp_path) as box:
            assert await box.unfinished() == [inbound(1)]  # killed while still queued
    for _ in range(MAX_INBOUND_ATTEMPTS + 2):
        async with Outbox.in_dir(tmp_path) as box:
            assert await box.unfinished() == [inbound(1)]
            await box.started("tg:1")
            await box.interrupted("tg:1")  # SIGTERM cut the turn: not its fault
    async with Outbox.in_dir(tmp_path) as box:
        assert await box.unfinished() == [inbound(1)]
        assert await box.dead_letters() == []


async def test_inbound_with_a_pending_or_delivered_reply_is_not_run_again(tmp_path: Path) -> None:
    async with Outbox.in_dir(tmp_path) as box:
        await box.seen(inbound(1))
        await box.seen(inbound(2))
        await box.add(reply("pending", in_reply_to="tg:1"))
        answered = reply("answered", in_reply_to="tg:2")
        await box.add(answered)
        await box.delivered(answered)
        assert await box.unfinished() == []


async def test_a_turn_answered_by_a_delivered_reply_ends_without_another_write(
    tmp_path: Path,
) -> None:
    async with Outbox.in_dir(tmp_path) as box:
        await box.seen(inbound(1))
        await box.seen(inbound(2))
        await box.placeholder(Placeholder("tg:2", "tg", "c", "t", "ph2"))
        answer = reply("answer", in_reply_to="tg:1")
        await box.add(answer)
        await box.delivered(answer)
        await box.finished("tg:1")  # answered already: nothing left to record
        await box.finished("tg:2")  # no reply delivered (e.g. an empty one): recorded
    db = sqlite3.connect(tmp_path / "outbox.db")
    states = dict(db.execute("SELECT id, state FROM inbound").fetchall())
    db.close()
    assert states == {"tg:1": "answered", "tg:2": "done"}
    async with Outbox.in_dir(tmp_path) as box:  # neither runs again, no placeholder is left
        assert await box.unfinished() == []
        assert await box.placeholders() == []
