"""The scheduler against each real store (SQLite; Redis, as in cluster mode, on a real
redis-server), with an injected clock: no real waiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from picobot.agent.schedule import (
    Entry,
    EntryStore,
    ScheduleError,
    Scheduler,
    ScheduleStore,
    Target,
)
from picobot.agent.schedule.scheduler import RETRY_AFTER
from picobot.core.messages import OutboundMessage
from tests.cluster.redis_server import RedisServer, server_in

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2026, 11, 30, 8, 0, tzinfo=PARIS).timestamp()
HERE = Target("telegram", "42", None, False)
THERE = Target("telegram", "43", None, False)


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Outbox(list[OutboundMessage]):
    """The outbound door: records what it is handed; `fail` makes it refuse."""

    fail = False

    async def __call__(self, msg: OutboundMessage) -> None:
        if self.fail:
            raise KeyError("no channel named 'telegram'")
        self.append(msg)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with server_in(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EntryStore]:
    """Every test runs against both stores: the Redis one must mean the same."""
    if request.param == "sqlite":
        async with ScheduleStore.in_dir(tmp_path) as s:
            yield s
        return
    from picobot.cluster import connect
    from picobot.cluster.schedule import RedisScheduleStore

    client = connect(request.getfixturevalue("redis_server").url)
    await client.flushdb()
    try:
        yield RedisScheduleStore(client)
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sent() -> Outbox:
    return Outbox()


@pytest.fixture
def scheduler(store: EntryStore, sent: Outbox, clock: Clock) -> Scheduler:
    return Scheduler(store, sent, clock=clock, tz=PARIS, grace=3600, max_per_chat=50)


async def test_a_one_shot_fires_once_when_due(
    scheduler: Scheduler, sent: Outbox, clock: Clock
) -> None:
    entry = await scheduler.create(HERE, "stretch", in_seconds=120)
    clock.now += 119
    await scheduler.fire_due()
    assert sent == []
    clock.now += 1
    await scheduler.fire_due()
    await scheduler.fire_due()
    assert [(m.channel, m.chat_id, m.text) for m in sent] == [("telegram", "42", "⏰ stretch")]
    assert sent[0].id == f"schedule-{entry.id}-{int(entry.due)}"  # stable across a restart
    assert await scheduler.entries(HERE.chat) == []


async def test_at_with_an_offset_fires_at_that_instant(
    scheduler: Scheduler, sent: Outbox, clock: Clock
) -> None:
    entry = await scheduler.create(HERE, "call mum", at="2026-11-30T09:30:00+01:00")
    assert entry.due == datetime(2026, 11, 30, 9, 30, tzinfo=PARIS).timestamp()
    clock.now = entry.due
    await scheduler.fire_due()
    assert [m.text for m in sent] == ["⏰ call mum"]


async def test_cron_recurs_in_the_configured_timezone(
    scheduler: Scheduler, sent: Outbox, clock: Clock
) -> None:
    entry = await scheduler.create(HERE, "standup", cron="0 9 * * *")
    assert entry.due == datetime(2026, 11, 30, 9, 0, tzinfo=PARIS).timestamp()
    clock.now = entry.due
    await scheduler.fire_due()
    (left,) = await scheduler.entries(HERE.chat)
    assert left.due == datetime(2026, 12, 1, 9, 0, tzinfo=PARIS).timestamp()
    clock.now = left.due + 5
    await scheduler.fire_due()
    assert [m.text for m in sent] == ["⏰ standup", "⏰ standup"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"at": "2026-11-30T07:00:00+01:00"}, "in the past"),
        ({"at": "2026-11-30T09:00:00"}, "needs a UTC offset"),
        ({"at": "tomorrow"}, "not an ISO 8601"),
        ({"in_seconds": 0}, "greater than 0"),
        ({"in_seconds": -5}, "greater than 0"),
        ({"in_seconds": "10"}, "a number"),
        ({"cron": "*/5 * * * * *"}, "exactly 5 fields"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "0 9 * *"}, "exactly 5 fields"),
        ({}, "exactly one of"),
        ({"in_seconds": 60, "cron": "0 9 * * *"}, "exactly one of"),
    ],
)
async def test_refusals_name_the_reason_and_store_nothing(
    scheduler: Scheduler, kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(ScheduleError, match=reason):
        await scheduler.create(HERE, "x", **kwargs)  # type: ignore[arg-type]
    assert await scheduler.entries(HERE.chat) == []


async def test_empty_text_is_refused(scheduler: Scheduler) -> None:
    with pytest.raises(ScheduleError, match="text"):
        await scheduler.create(HERE, "  ", in_seconds=60)


async def test_a_recurring_interval_under_a_minute_is_refused(
    store: EntryStore, sent: Outbox
) -> None:
    # Five fields cannot say "every 5 seconds"; the interval check is the second guard.
    with pytest.raises(ScheduleError, match="exactly 5 fields"):
        await Scheduler(store, sent, tz=PARIS).create(HERE, "x", cron="*/5 * * * * *")
    from picobot.agent.schedule.scheduler import parse_cron

    assert parse_cron("* * * * *", START, PARIS) == START + 60


async def test_max_per_chat_is_enforced_per_chat(scheduler: Scheduler) -> None:
    for i in range(50):
        await scheduler.create(HERE, f"r{i}", in_seconds=60 + i)
    with pytest.raises(ScheduleError, match="already has 50 entries"):
        await scheduler.create(HERE, "one too many", in_seconds=60)
    await scheduler.create(THERE, "another chat", in_seconds=60)
    assert len(await scheduler.entries(HERE.chat)) == 50


async def test_cancel_only_in_the_owning_chat(scheduler: Scheduler, sent: Outbox) -> None:
    mine = await scheduler.create(HERE, "mine", in_seconds=60)
    with pytest.raises(ScheduleError, match=f"no entry #{mine.id} in this chat"):
        await scheduler.cancel(THERE.chat, mine.id)
    assert (await scheduler.cancel_text(THERE.chat, f"{mine.id}")).startswith("error: ")
    assert await scheduler.entries(HERE.chat) != []
    assert await scheduler.cancel_text(HERE.chat, f"#{mine.id}") == f"Cancelled #{mine.id}."
    assert await scheduler.entries(HERE.chat) == []
    assert "Usage" in await scheduler.cancel_text(HERE.chat, "soon")


async def test_reminders_lists_one_line_per_entry_starting_with_its_id(
    scheduler: Scheduler,
) -> None:
    assert await scheduler.reminders_text(HERE.chat) == "No reminders in this chat."
    a = await scheduler.create(HERE, "water plants", in_seconds=600)
    b = await scheduler.create(HERE, "news digest", cron="30 7 * * 1-5", run_agent=True)
    await scheduler.create(THERE, "not listed here", in_seconds=60)
    lines = (await scheduler.reminders_text(HERE.chat)).splitlines()
    assert [line.split()[0] for line in lines] == [f"#{a.id}", f"#{b.id}"]  # soonest first
    assert "water plants" in lines[0] and "cron 30 7 * * 1-5" in lines[1]


async def test_entries_survive_a_restart_and_fire_once(
    tmp_path: Path, sent: Outbox, clock: Clock
) -> None:
    async with ScheduleStore.in_dir(tmp_path / "d") as store:
        await Scheduler(store, sent, clock=clock, tz=PARIS).create(HERE, "later", in_seconds=30)
    clock.now += 600  # the daemon was down when it came due, less than `grace` ago
    async with ScheduleStore.in_dir(tmp_path / "d") as store:
        restarted = Scheduler(store, sent, clock=clock, tz=PARIS, grace=3600)
        await restarted.fire_due()
        await restarted.fire_due()
    assert [m.text for m in sent] == ["⏰ later"]


async def test_an_entry_later_than_grace_is_skipped_with_a_log_line(
    store: EntryStore, sent: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = Scheduler(store, sent, clock=clock, tz=PARIS, grace=60)
    one_shot = await scheduler.create(HERE, "missed", in_seconds=30)
    daily = await scheduler.create(HERE, "daily", cron="0 9 * * *")
    clock.now = daily.due + 3 * 3600
    with caplog.at_level(logging.WARNING, "picobot.schedule"):
        await scheduler.fire_due()
    assert sent == []
    assert f"entry #{one_shot.id}" in caplog.text and "skipped" in caplog.text
    (left,) = await scheduler.entries(HERE.chat)  # the one-shot is gone, the cron moved on
    assert left.id == daily.id and left.due == daily.due + 86400


async def test_a_failed_delivery_is_retried_not_lost(
    scheduler: Scheduler, sent: Outbox, clock: Clock
) -> None:
    await scheduler.create(HERE, "persist", in_seconds=10)
    clock.now += 10
    sent.fail = True
    await scheduler.fire_due()
    sent.fail = False
    await scheduler.fire_due()  # too early for the retry
    assert sent == [] and len(await scheduler.entries(HERE.chat)) == 1
    clock.now += RETRY_AFTER
    await scheduler.fire_due()
    assert [m.text for m in sent] == ["⏰ persist"]


async def test_run_agent_delivers_the_turns_answer(
    store: EntryStore, sent: Outbox, clock: Clock
) -> None:
    turns: list[tuple[str, str]] = []

    async def run_turn(session: str, text: str) -> str:
        turns.append((session, text))
        return "Here is your summary."

    scheduler = Scheduler(store, sent, run_turn, clock=clock, tz=PARIS)
    target = Target("slack", "C1", "171.5", True)
    await scheduler.create(target, "summarise the feed", in_seconds=60, run_agent=True)
    clock.now += 60
    await scheduler.fire_due()
    assert turns == [("slack:C1:171.5", "summarise the feed")]
    assert [(m.text, m.thread, m.is_group) for m in sent] == [
        ("Here is your summary.", "171.5", True)
    ]


async def test_the_loop_fires_due_entries_and_stops_cleanly(
    store: EntryStore, clock: Clock
) -> None:
    fired = asyncio.Event()

    async def deliver(msg: OutboundMessage) -> None:
        fired.set()

    scheduler = Scheduler(store, deliver, clock=clock, tz=PARIS)
    await scheduler.create(HERE, "now", in_seconds=5)
    clock.now += 5  # due: the loop fires it without waiting
    task = asyncio.create_task(scheduler.run())
    async with asyncio.timeout(5):
        await fired.wait()
        await scheduler.settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await scheduler.entries(HERE.chat) == []


async def test_a_stop_after_the_firing_is_recorded_waits_for_the_entry_to_advance(
    store: EntryStore, clock: Clock
) -> None:
    """Stopped between recording a firing in the outbox and advancing the entry (the outbox
    delivers it meanwhile): the stop lets the advance finish, so the next start does not
    fire the reminder a second time."""
    advancing, go = asyncio.Event(), asyncio.Event()

    class SlowToAdvance:
        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def fired(self, entry: Entry, next_due: float | None) -> bool:
            advancing.set()
            await go.wait()
            return await store.fired(entry, next_due)

    sent = Outbox()
    scheduler = Scheduler(SlowToAdvance(), sent, clock=clock, tz=PARIS)  # type: ignore[arg-type]
    await scheduler.create(HERE, "stretch", in_seconds=5)
    clock.now += 5
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(advancing.wait(), 5)
    task.cancel()  # the daemon stops
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert [m.text for m in sent] == ["⏰ stretch"]
    assert await store.due(clock.now) == []  # advanced: nothing fires at the next start


async def test_a_firing_the_outbox_already_holds_is_not_fired_again(
    scheduler: Scheduler, sent: Outbox, clock: Clock
) -> None:
    """Killed between recording a firing in the outbox and advancing the entry: at the next
    start the entry is advanced, and the outbox alone delivers the reminder."""
    entry = await scheduler.create(HERE, "stretch", in_seconds=60)
    other = await scheduler.create(THERE, "drink", in_seconds=60)
    clock.now += 61
    recorded = {f"schedule-{entry.id}-{int(entry.due)}"}

    async def holds(msg_id: str) -> bool:
        return msg_id in recorded

    assert await scheduler.reconcile(holds) == 1
    await scheduler.fire_due()
    assert [m.text for m in sent] == ["⏰ drink"]  # only the one the outbox did not hold
    assert await scheduler.entries(HERE.chat) == []
    assert await scheduler.entries(THERE.chat) == [] and other.id != entry.id


async def test_the_loop_outlives_a_failing_store(
    store: EntryStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The store fails (Redis unreachable, a disk error): one warning, and the loop tries
    again after `poll` seconds instead of dying."""
    fired = asyncio.Event()

    class Flaky:
        failures = 2

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def due(self, now: float) -> list[Entry]:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("Redis is down")
            return await store.due(now)

    async def deliver(msg: OutboundMessage) -> None:
        fired.set()

    scheduler = Scheduler(Flaky(), deliver, clock=clock, tz=PARIS, poll=0.01)  # type: ignore[arg-type]
    await scheduler.create(HERE, "now", in_seconds=5)
    clock.now += 5
    task = asyncio.create_task(scheduler.run())
    with caplog.at_level(logging.INFO, "picobot.schedule"):
        async with asyncio.timeout(5):
            await fired.wait()
            await scheduler.settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert caplog.text.count("the store failed (ConnectionError: Redis is down)") == 1
    assert "the store answers again" in caplog.text
