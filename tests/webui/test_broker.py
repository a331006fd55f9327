"""RunBroker: fan-out, late subscribers, resume by id, TTL, slow subscribers."""

from __future__ import annotations

import asyncio

import pytest

from picobot.webui.broker import Event, Overflowed, RunBroker, RunsFull, Subscription, UnknownRun

TIMEOUT = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def drain(sub: Subscription) -> list[Event]:
    async with asyncio.timeout(TIMEOUT):
        return [event async for event in sub]


def ids(events: list[Event]) -> list[int]:
    return [e.id for e in events]


async def test_fan_out_to_every_subscriber_in_order() -> None:
    broker = RunBroker()
    broker.open("r1", "s")
    tabs = [broker.subscribe("r1"), broker.subscribe("r1")]
    broker.publish("r1", "turn_started")
    for word in ("a", "b", "c"):
        broker.publish("r1", "text_delta", {"text": word})
    broker.finish("r1")
    results = await asyncio.gather(*(drain(tab) for tab in tabs))
    for events in results:
        assert ids(events) == [1, 2, 3, 4, 5]
        assert [e.name for e in events] == ["turn_started", *["text_delta"] * 3, "done"]
    assert results[0] == results[1]


async def test_late_subscriber_gets_the_log_then_live_events() -> None:
    broker = RunBroker()
    broker.open("r1", "s")
    broker.publish("r1", "turn_started")
    broker.publish("r1", "text_delta", {"text": "early"})
    late = broker.subscribe("r1")
    async with asyncio.timeout(TIMEOUT):
        assert (await anext(late)).id == 1
        assert (await anext(late)).data == {"text": "early"}
        waiting = asyncio.create_task(anext(late))
        await asyncio.sleep(0)  # let it block on the empty queue
        assert not waiting.done()
        broker.publish("r1", "text_delta", {"text": "live"})
        assert (await waiting).data == {"text": "live"}
    broker.finish("r1")
    assert [e.name for e in await drain(late)] == ["done"]


async def test_resume_after_last_event_id_has_no_gap_and_no_repeat() -> None:
    broker = RunBroker()
    broker.open("r1", "s")
    for n in range(5):
        broker.publish("r1", "text_delta", {"text": str(n)})
    first = broker.subscribe("r1")
    async with asyncio.timeout(TIMEOUT):
        seen = [await anext(first), await anext(first)]
    first.close()  # the tab's connection drops after event 2
    resumed = broker.subscribe("r1", after=seen[-1].id)
    broker.publish("r1", "text_delta", {"text": "5"})
    broker.finish("r1")
    rest = await drain(resumed)
    assert ids(seen + rest) == list(range(1, 8))
    assert [e.data.get("text") for e in seen + rest][:6] == ["0", "1", "2", "3", "4", "5"]


async def test_after_the_run_ended_a_subscriber_gets_the_log_and_done_at_once() -> None:
    broker = RunBroker()
    broker.open("r1", "s")
    broker.publish("r1", "turn_finished", {"text": "hi"})
    broker.finish("r1")
    broker.publish("r1", "text_delta", {"text": "too late"})  # ignored: the run ended
    events = await drain(broker.subscribe("r1"))
    assert [e.name for e in events] == ["turn_finished", "done"]
    assert await drain(broker.subscribe("r1", after=2)) == []


async def test_finished_log_is_dropped_after_the_ttl() -> None:
    clock = Clock()
    broker = RunBroker(ttl=60, clock=clock)
    broker.open("r1", "s")
    broker.finish("r1")
    clock.now += 59
    assert [e.name for e in await drain(broker.subscribe("r1"))] == ["done"]
    clock.now += 1
    with pytest.raises(UnknownRun):
        broker.subscribe("r1")
    assert "r1" not in broker


async def test_silent_unfinished_run_expires_after_the_idle_ttl() -> None:
    clock = Clock()
    broker = RunBroker(ttl=60, idle_ttl=600, clock=clock)
    broker.open("r1", "s")
    waiting = broker.subscribe("r1")
    clock.now += 599
    broker.sweep()
    assert "r1" in broker
    clock.now += 1
    broker.sweep()
    assert "r1" not in broker
    assert await drain(waiting) == []  # its subscriber ends instead of waiting forever


async def test_slow_subscriber_is_dropped_without_blocking_others_and_resumes() -> None:
    broker = RunBroker(queue_size=2)
    broker.open("r1", "s")
    slow, fast = broker.subscribe("r1"), broker.subscribe("r1")
    got = []
    async with asyncio.timeout(TIMEOUT):
        broker.publish("r1", "text_delta", {"text": "0"})
        assert (await anext(slow)).id == 1  # then the slow tab stops reading
        got.append(await anext(fast))
        for n in range(1, 6):
            broker.publish("r1", "text_delta", {"text": str(n)})  # never waits
            got.append(await anext(fast))
    assert ids(got) == [1, 2, 3, 4, 5, 6]  # the fast tab got everything, live
    with pytest.raises(Overflowed) as info:
        async with asyncio.timeout(TIMEOUT):
            await anext(slow)
    assert info.value.last_id == 1
    broker.finish("r1")
    resumed = await drain(broker.subscribe("r1", after=info.value.last_id))
    assert ids(resumed) == [2, 3, 4, 5, 6, 7]  # no gap, no repeat, then done
    assert [e.name for e in await drain(fast)][-1] == "done"


async def test_unknown_run() -> None:
    with pytest.raises(UnknownRun):
        RunBroker().subscribe("nope")


async def test_close_ends_every_subscription() -> None:
    broker = RunBroker()
    broker.open("r1", "s")
    sub = broker.subscribe("r1")
    broker.publish("r1", "turn_started")
    broker.close()
    assert ids(await drain(sub)) == [1]  # what was queued, then the end
    assert await drain(broker.subscribe("r1", after=1)) == []


async def test_bounded_log_and_run_count() -> None:
    broker = RunBroker(log_size=3, max_runs=2)
    broker.open("r1", "a")
    for n in range(5):
        broker.publish("r1", "text_delta", {"text": str(n)})
    broker.finish("r1")
    assert ids(await drain(broker.subscribe("r1"))) == [4, 5, 6]
    broker.open("r2", "a")
    broker.open("r3", "b")
    assert "r1" not in broker and len(broker) == 2
    assert list(broker.runs_of("a")) == ["r2"]


def test_a_flood_of_runs_never_evicts_a_live_run() -> None:
    broker = RunBroker(max_runs=3)
    broker.open("live", "other-tab")
    broker.open("f1", "flood")
    broker.finish("f1")
    broker.open("f2", "flood")
    broker.open("f3", "flood")  # the finished f1 makes room
    assert "f1" not in broker and "live" in broker
    with pytest.raises(RunsFull):
        broker.open("f4", "flood")
    assert "live" in broker and list(broker.runs_of("other-tab")) == ["live"]


async def test_a_standing_run_is_a_sessions_own_stream() -> None:
    """Not among the session's runs; a new watcher gets live events only; kept while watched,
    and the first to make room when unwatched."""
    clock = Clock()
    broker = RunBroker(clock=clock, idle_ttl=60, max_runs=2)
    broker.open("session:s", "s", standing=True)
    broker.open("r1", "s")
    assert list(broker.runs_of("s")) == ["r1"] and not broker.watched("session:s")
    broker.publish("session:s", "notice", {"text": "old"})
    tab = broker.subscribe("session:s", None)
    assert broker.watched("session:s")
    broker.publish("session:s", "notice", {"text": "new"})
    clock.now += 120  # silent for longer than idle_ttl, but watched: kept
    broker.sweep()
    assert "session:s" in broker and "r1" not in broker
    tab.close()
    broker.open("r2", "s")
    broker.open("r3", "s")  # full: the unwatched standing run makes room, no live run does
    assert "session:s" not in broker and {"r2", "r3"} <= set(broker.runs_of("s"))
    assert [e.data["text"] for e in await drain(tab)] == ["new"]
