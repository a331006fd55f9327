"""The durable outbox end to end: `picobot run` (a subprocess) against FakeTelegram.

A burst of messages, then SIGTERM or SIGKILL, then a restart: every reply to a message the
daemon accepted is visible, once (SIGTERM) or with at most one duplicate per chat in flight
(SIGKILL). Flaky sends, an outage and a blocked chat: everything delivered, in order per chat,
or kept as a dead letter.

Polling confirms an update to Telegram only after picobot recorded it, so after a SIGKILL
Telegram delivers the unrecorded ones again; the SIGKILL test still counts the messages the
daemon recorded ("accepted"), read from its outbox.db. The restart bursts use one message
per chat: messages arriving together in one chat are answered together (steering), so "one
reply per message" holds only across chats; the in-order tests check what holds within one.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

from tests.e2e.harness import (
    DEMO_DELAY,
    ENDED,
    TIMEOUT,
    FaultyTelegram,
    accepted,
    assert_in_order,
    finished_turns,
    outbox_counts,
    partials,
    push_burst,
    replies,
    running,
    status,
    wait_answered,
    write_config,
)

BURST_CHATS = list(range(301, 321))  # 20 chats, one message each


def answered_count(fake: FaultyTelegram, chats: list[int]) -> int:
    return sum(len(replies(fake, chat)) for chat in chats)


async def sigterm_burst_restart(
    tmp_path: Path, drain_timeout: float, delay: str, wait: float = TIMEOUT
) -> None:
    async with FaultyTelegram() as fake:
        config = write_config(tmp_path, fake, drain_timeout=drain_timeout)
        async with running(config, delay) as bot:
            await bot.ready()
            texts = push_burst(fake, BURST_CHATS, per_chat=1)
            await fake.wait_for(lambda f: answered_count(f, BURST_CHATS) >= 3, TIMEOUT)
            assert await bot.stop(signal.SIGTERM) == 0
        # A graceful stop hands every fetched update to the intake before it closes.
        assert accepted(tmp_path / "data") == set(texts)
        async with running(config) as bot:
            await bot.ready()
            await wait_answered(fake, bot, BURST_CHATS, set(texts), wait)
            assert await bot.stop() == 0
        counts = Counter(t for chat in BURST_CHATS for t in replies(fake, chat))
        assert counts == Counter(texts)  # each exactly once
        assert all(partials(fake, chat) == [] for chat in BURST_CHATS)


async def test_sigterm_during_a_burst_then_restart_replies_exactly_once(tmp_path: Path) -> None:
    await sigterm_burst_restart(tmp_path, drain_timeout=10, delay=DEMO_DELAY)


async def test_sigterm_with_a_short_drain_then_restart_replies_exactly_once(
    tmp_path: Path,
) -> None:
    # Turns of ~2 s (the demo's own pace), 8 at a time: 1 s cannot finish 20 of them.
    await sigterm_burst_restart(tmp_path, drain_timeout=1, delay="0.03", wait=10)


async def test_sigterm_with_updates_waiting_then_restart_replies_exactly_once(
    tmp_path: Path,
) -> None:
    # Messages that reach Telegram while picobot stops: polling confirms only what the intake
    # recorded, so the next run gets the rest from Telegram; the outbox skips the replays.
    late_chats = list(range(321, 341))
    async with FaultyTelegram() as fake:
        config = write_config(tmp_path, fake)
        async with running(config) as bot:
            await bot.ready()
            texts = push_burst(fake, BURST_CHATS, per_chat=1)
            await fake.wait_for(lambda f: answered_count(f, BURST_CHATS) >= 3, TIMEOUT)
            assert bot.proc is not None
            bot.proc.send_signal(signal.SIGTERM)
            await bot.wait_line(r"received SIGTERM")
            late = push_burst(fake, late_chats, per_chat=1)
            async with asyncio.timeout(TIMEOUT):
                assert await bot.proc.wait() == 0
            await bot.stop()  # exited already: only collects the log
        taken = accepted(tmp_path / "data")
        assert set(texts) <= taken <= set(texts + late)
        async with running(config) as bot:
            await bot.ready()
            await wait_answered(fake, bot, BURST_CHATS + late_chats, set(texts + late))
            assert await bot.stop() == 0
        counts = Counter(t for chat in BURST_CHATS + late_chats for t in replies(fake, chat))
        assert counts == Counter(texts + late)  # each exactly once
        assert all(partials(fake, chat) == [] for chat in BURST_CHATS + late_chats)


async def test_sigkill_during_a_burst_then_restart_delivers_everything(tmp_path: Path) -> None:
    async with FaultyTelegram() as fake:
        config = write_config(tmp_path, fake)
        async with running(config) as bot:
            await bot.ready()
            texts = push_burst(fake, BURST_CHATS, per_chat=1)
            await fake.wait_for(lambda f: answered_count(f, BURST_CHATS) >= 3, TIMEOUT)
            assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
        before = answered_count(fake, BURST_CHATS)
        assert before < len(texts), "the SIGKILL came too late to cut the burst"
        taken = accepted(tmp_path / "data")
        assert taken <= set(texts)
        assert len(taken) >= before  # at least every message answered so far was recorded
        async with running(config) as bot:
            await bot.ready()
            await wait_answered(fake, bot, BURST_CHATS, taken)
            assert await bot.stop() == 0
        counts = Counter(t for chat in BURST_CHATS for t in replies(fake, chat))
        duplicates = sum(n - 1 for n in counts.values())
        print(f"SIGKILL: {before} replies before, {len(taken)} accepted, {duplicates} duplicates")
        # A kill duplicates at most the chunk in flight in each chat's lane.
        assert duplicates <= len(BURST_CHATS)
        assert set(counts) == taken


async def test_flaky_sends_deliver_everything_in_order(tmp_path: Path) -> None:
    async with FaultyTelegram(seed=3) as fake:
        fake.random_faults = {"500": 0.2, "drop": 0.1}
        config = write_config(tmp_path, fake)
        chats = [101, 102, 103]
        async with running(config) as bot:
            await bot.ready()
            texts = push_burst(fake, chats, per_chat=5)
            last = {t for t in texts if t.endswith("-004")}
            await wait_answered(fake, bot, chats, last)
            assert await bot.stop() == 0
        faults = Counter(c.fault for c in fake.calls if c.method == "sendMessage" and c.fault)
        assert faults["500"] >= 2 and faults["drop"] >= 1, faults  # the faults did happen
        # A 500 or a dropped request never created the message: no duplicates, in order.
        for chat in chats:
            assert_in_order(fake, chat, texts)
        assert set(finished_turns(tmp_path / "data").values()) <= ENDED


async def test_platform_down_then_back_delivers_in_order(tmp_path: Path) -> None:
    async with FaultyTelegram() as fake:
        fake.down = True  # every sendMessage answers 500 (polling still works)
        config = write_config(tmp_path, fake)
        chats = [101, 102]
        async with running(config) as bot:
            port = await bot.ready()
            texts = push_burst(fake, chats, per_chat=3)
            # Past the retry budget: the reply stays in the outbox and the lane retries later.
            await bot.wait_line(r"telegram:10[12] unreachable .*; retrying in 1 s")
            pending, dead = outbox_counts(await status(tmp_path, port))
            assert pending >= 1 and dead == 0
            assert all(replies(fake, chat) == [] for chat in chats)
            fake.down = False
            await wait_answered(fake, bot, chats, {t for t in texts if t.endswith("-002")})
            assert outbox_counts(await status(tmp_path, port)) == (0, 0)
            assert await bot.stop() == 0
        for chat in chats:
            assert_in_order(fake, chat, texts)
        assert set(finished_turns(tmp_path / "data").values()) <= ENDED


async def test_blocked_chat_is_a_dead_letter_others_are_fine(tmp_path: Path) -> None:
    async with FaultyTelegram() as fake:
        blocked, fine = 201, [202, 203]
        fake.forbid(blocked)
        config = write_config(tmp_path, fake, streaming=True)  # the streaming path, too
        async with running(config) as bot:
            port = await bot.ready()
            texts = push_burst(fake, [blocked, *fine], per_chat=1)
            ok = {t for t in texts if not t.startswith(f"ping-{blocked}-")}
            await wait_answered(fake, bot, fine, ok)
            await bot.wait_line(r"giving up on a reply to telegram:201: .*Forbidden")
            out = await status(tmp_path, port)
            pending, dead = outbox_counts(out)
            assert (pending, dead) == (0, 1), out
            assert "dead: telegram:201: Forbidden: Forbidden: bot was blocked by the user" in out
            assert await bot.stop() == 0
        attempts = len(fake.send_attempts(blocked))
        assert 1 <= attempts <= 2  # the first streamed send, the final reply; no retries
        # After a restart the dead letter is not retried; other chats still get answers.
        async with running(config) as bot:
            port = await bot.ready()
            fake.user_message(202, "ping-202-900")
            await wait_answered(fake, bot, [202], {"ping-202-900"})
            assert outbox_counts(await status(tmp_path, port)) == (0, 1)
            assert await bot.stop() == 0
        assert len(fake.send_attempts(blocked)) == attempts
        assert replies(fake, 202) == ["ping-202-000", "ping-202-900"]
        assert replies(fake, 203) == ["ping-203-000"]
