"""Telegram polling: an update is confirmed (the next getUpdates offset) only once the sink took it.

The real adapter and python-telegram-bot against FakeTelegram. Sinks block on events the test
sets, so every step waits on something observable; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from channels.telegram_channel import POLL_TIMEOUT, TelegramChannel
from channels.telegram_polling import BACKOFF_MAX, TelegramPoller
from picobot.config import TelegramConfig
from picobot.core.channel import Rendered, State
from picobot.core.errors import BusClosed
from picobot.core.messages import InboundMessage
from tests.fakes.fake_telegram import FakeTelegram

Sink = Callable[[InboundMessage], Awaitable[None]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def channel_for(fake: FakeTelegram, sink: Sink) -> TelegramChannel:
    return TelegramChannel(
        TelegramConfig(enabled=True, token=fake.token, base_url=fake.base_url), sink
    )


def offsets(fake: FakeTelegram) -> list[int | None]:
    """The offset of every getUpdates the fake answered so far (None: no offset given)."""
    return [c.params.get("offset") for c in fake.calls if c.method == "getUpdates"]


class Recorder:
    """A sink that records what it was given; `gate(id)` makes it wait for `release(id)`."""

    def __init__(self) -> None:
        self.received: list[InboundMessage] = []
        self.entered = asyncio.Event()
        self._gates: dict[str, asyncio.Event] = {}

    def gate(self, update: dict[str, Any]) -> None:
        self._gates[f"telegram:{update['update_id']}"] = asyncio.Event()

    def release(self, update: dict[str, Any]) -> None:
        self._gates[f"telegram:{update['update_id']}"].set()

    async def __call__(self, message: InboundMessage) -> None:
        self.received.append(message)
        self.entered.set()
        if gate := self._gates.get(message.id):
            await gate.wait()

    async def wait_for(self, update: dict[str, Any], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while f"telegram:{update['update_id']}" not in self.ids:
                self.entered.clear()
                await self.entered.wait()

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.received]


async def test_offset_passes_an_update_only_after_the_sink_returned(fake: FakeTelegram) -> None:
    sink = Recorder()
    first = fake.user_message(42, "first")
    sink.gate(first)
    channel = channel_for(fake, sink)
    await channel.start()
    try:
        await sink.wait_for(first)
        second = fake.user_message(42, "second")  # waits at Telegram: nobody asks for it yet
        sink.gate(second)
        await channel.typing("42")  # a round trip: time for an early poll to reach the fake
        assert fake.pending_polls == 0  # no poll while the sink holds an update
        assert all(o is None or o <= first["update_id"] for o in offsets(fake))

        sink.release(first)
        await sink.wait_for(second)
        # The poll that fetched `second` was the first to confirm `first`, and nothing more.
        assert offsets(fake)[-1] == first["update_id"] + 1
        assert all(o is None or o <= second["update_id"] for o in offsets(fake))
        sink.release(second)
        await fake.wait_for(lambda f: f.pending_polls > 0)  # polling on, past `second`
    finally:
        await channel.stop()
    assert offsets(fake)[-1] == second["update_id"] + 1  # confirmed by now
    assert sink.ids == [f"telegram:{first['update_id']}", f"telegram:{second['update_id']}"]


async def test_a_batch_is_handed_over_chat_by_chat_at_once(fake: FakeTelegram) -> None:
    # One batch: chat 42 twice, chat 43 once. Holding 42's first update holds 42's second
    # (order within a chat) but not 43's; the offset passes none until all were handed over.
    sink = Recorder()
    first = fake.user_message(42, "first")
    other = fake.user_message(43, "other chat")
    second = fake.user_message(42, "second")
    sink.gate(first)
    channel = channel_for(fake, sink)
    await channel.start()
    try:
        await sink.wait_for(other)
        assert sink.ids == [f"telegram:{u['update_id']}" for u in (first, other)]
        assert all(o is None or o <= first["update_id"] for o in offsets(fake))
        sink.release(first)
        await sink.wait_for(second)
        await fake.wait_for(lambda f: f.pending_polls > 0)  # polling on, past the batch
    finally:
        await channel.stop()
    assert offsets(fake)[-1] == second["update_id"] + 1
    assert [m.text for m in sink.received if m.chat_id == "42"] == ["first", "second"]


async def test_refused_update_is_delivered_again_after_a_restart(fake: FakeTelegram) -> None:
    refused: list[str] = []

    async def closing(message: InboundMessage) -> None:
        refused.append(message.id)
        raise BusClosed("shutting down: not accepting messages")

    first = fake.user_message(42, "first")
    second = fake.user_message(43, "second")
    channel = channel_for(fake, closing)
    await channel.start()
    try:
        await fake.wait_for(lambda f: bool(refused))
    finally:
        await channel.stop()
    # Both chats' updates were offered at once; polling stopped without confirming either.
    assert sorted(refused) == sorted(f"telegram:{u['update_id']}" for u in (first, second))
    assert all(o is None or o <= first["update_id"] for o in offsets(fake))

    sink = Recorder()
    restarted = channel_for(fake, sink)
    await restarted.start()
    try:
        await sink.wait_for(second)
    finally:
        await restarted.stop()
    assert sink.ids == [f"telegram:{first['update_id']}", f"telegram:{second['update_id']}"]


async def test_poison_update_is_skipped_and_the_next_handled(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Recorder()

    async def fragile(message: InboundMessage) -> None:
        if message.text == "poison":
            raise ValueError("cannot digest this")
        await sink(message)

    poison = fake.user_message(42, "poison")
    fine = fake.user_message(42, "fine")
    channel = channel_for(fake, fragile)
    await channel.start()
    try:
        await sink.wait_for(fine)
    finally:
        await channel.stop()
    assert [m.text for m in sink.received] == ["fine"]
    assert f"could not handle update {poison['update_id']}" in caplog.text
    assert offsets(fake)[-1] == fine["update_id"] + 1  # the poison update is confirmed too


async def test_stop_intake_cancels_the_long_poll_promptly(fake: FakeTelegram) -> None:
    sink = Recorder()
    channel = channel_for(fake, sink)
    await channel.start()
    try:
        await fake.wait_for(lambda f: f.pending_polls > 0)
        async with asyncio.timeout(POLL_TIMEOUT / 2):  # well before the poll would end
            await channel.stop_intake()
    finally:
        await channel.stop()
    assert sink.received == []
    # Nothing was handled, so nothing to confirm: no extra getUpdates on the way out.
    assert not [c for c in fake.calls if c.method == "getUpdates" and c.params["timeout"] == 0]


# -- the poller on its own, with an instant backoff ----------------------------------------


async def poll_with_conflicts(fake: FakeTelegram, conflicts: int) -> tuple[list[Any], list[float]]:
    """Poll with `conflicts` 409s first, then one update; the states reported and backoffs."""
    states: list[tuple[State, str]] = []
    delays: list[float] = []
    handled = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    async def handle(update: Any) -> None:
        handled.set()

    fake.conflict(conflicts)
    fake.user_message(42, "hello")
    async with Bot(fake.token, base_url=fake.base_url, get_updates_request=HTTPXRequest()) as bot:
        poller = TelegramPoller(
            bot,
            handle,
            lambda state, detail: states.append((state, detail)),
            timeout=1,
            allowed_updates=["message"],
            sleep=sleep,
        )
        poller.start()
        try:
            async with asyncio.timeout(5):
                await handled.wait()
        finally:
            await poller.stop(1.0)
    return states, delays


async def test_409_is_reported_once_then_recovers_with_a_capped_backoff(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "picobot.telegram"):
        states, delays = await poll_with_conflicts(fake, 12)
    assert delays[:4] == [1.0, 1.5, 2.25, 3.375]
    assert len(delays) == 12 and delays[-1] == BACKOFF_MAX
    assert delays == sorted(delays)
    assert [s for s, _ in states] == [State.DISCONNECTED] * 12 + [State.CONNECTED]
    assert states[0][1].startswith("409 Conflict: is another instance polling with this token?")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "409 Conflict" in errors[0].getMessage()
    assert "polling recovered" in caplog.text


# -- cluster mode: polling only while holding the lease (HoldsConnection) ---------------------


async def test_a_deferred_channel_sends_but_polls_only_when_told(fake: FakeTelegram) -> None:
    sink = Recorder()
    channel = channel_for(fake, sink)
    assert channel.exclusive_intake
    channel.defer_intake(poll_timeout=1.0)
    await channel.start()
    try:
        assert channel.state is State.CONNECTED
        assert await channel.send("42", Rendered("hi", None, "hi"))
        assert fake.chat_log(42)[0].text == "hi"
        assert fake.polls_received == 0
        await channel.open_intake()
        update = fake.user_message(42, "hello")
        await sink.wait_for(update)
        await fake.wait_for(lambda f: f.pending_polls == 1)
        # A hand-over: the poll in flight returns by itself (1 s here), it is not cut.
        await channel.close_intake(finish_poll=True)
        polls = [c for c in fake.calls if c.method == "getUpdates"]
        assert polls[-1].delivered and polls[-1].status == 200
        assert fake.pending_polls == 0
        await channel.open_intake()  # the lease came back
        await fake.wait_for(lambda f: f.pending_polls == 1)
        await channel.close_intake(finish_poll=False)  # the lease was lost: stop at once
        assert fake.overlapping_polls == 0
    finally:
        await channel.stop()
