"""AgentLoop: routing, steering, follow-ups, /stop, writers and listeners, drain."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from picobot.agent.loop import STEERING_FULL, AgentLoop
from picobot.agent.turns import GENERIC_FAILURE, Agent
from picobot.core import events as ev
from picobot.core.bus import Topic
from picobot.core.messages import InboundMessage, OutboundMessage, Sender
from tests.agent.conftest import TIMEOUT, MakeAgent, of_type
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall


class Writer:
    def __init__(self, fail_on: type | None = None, hold: asyncio.Event | None = None) -> None:
        self.events: list[ev.RunEvent] = []
        self.finished = asyncio.Event()
        self.finish_calls = 0
        self.fail_on = fail_on
        self.hold = hold  # the reply's delivery waits for it (a platform that is down)

    async def feed(self, event: ev.RunEvent) -> None:
        if self.fail_on is not None and isinstance(event, self.fail_on):
            raise RuntimeError("writer broke")
        self.events.append(event)
        if self.hold is not None and isinstance(event, ev.TurnFinished):
            await self.hold.wait()

    async def finish(self) -> None:
        self.finish_calls += 1
        self.finished.set()


class Harness:
    def __init__(self, agent: Agent) -> None:
        self.topic: Topic[InboundMessage] = Topic("inbound")
        self.writers: dict[str, Writer] = {}
        self.heard: list[tuple[InboundMessage, ev.RunEvent]] = []
        self.published: list[OutboundMessage] = []
        self.fail_on: type | None = None
        self.hold: asyncio.Event | None = None
        self._heard_more = asyncio.Event()
        self._made: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.loop = AgentLoop(
            agent, self.topic, self.make_writer, [self.listen], publish=self.publish
        )

    def make_writer(self, inbound: InboundMessage) -> Writer:
        assert inbound.id not in self.writers, "one writer per inbound message"
        writer = self.writers[inbound.id] = Writer(self.fail_on, self.hold)
        self._made[inbound.id].set()
        return writer

    def listen(self, inbound: InboundMessage, event: ev.RunEvent) -> None:
        self.heard.append((inbound, event))
        self._heard_more.set()

    async def publish(self, msg: OutboundMessage) -> None:
        self.published.append(msg)

    def send(self, text: str, chat: str = "1") -> InboundMessage:
        msg = InboundMessage("test", chat, Sender("u1"), text)
        self.loop.submit(msg)
        return msg

    async def wait_for_event(self, msg: InboundMessage, kind: type) -> None:
        """Until the message's writer was fed an event of `kind` (listeners hear it first)."""
        async with asyncio.timeout(TIMEOUT):
            while not any(m.id == msg.id and isinstance(e, kind) for m, e in self.heard):
                self._heard_more.clear()
                await self._heard_more.wait()

    async def done(self, msg: InboundMessage) -> Writer:
        """The message's writer, once finished (made by a task we do not control: wait)."""
        async with asyncio.timeout(TIMEOUT):
            await self._made[msg.id].wait()
            await self.writers[msg.id].finished.wait()
        return self.writers[msg.id]


@pytest.fixture
async def h(agent: Agent) -> AsyncIterator[Harness]:
    harness = Harness(agent)
    yield harness
    harness.topic.close()
    assert await harness.loop.drain(TIMEOUT)
    for writer in harness.writers.values():
        assert writer.finish_calls == 1  # every writer finished exactly once


async def test_run_consumes_the_topic_and_tells_listeners(fake: FakeOpenAI, h: Harness) -> None:
    task = asyncio.create_task(h.loop.run())
    msg = InboundMessage("test", "1", Sender("u1"), "hi")
    await h.topic.publish(msg)

    writer = await h.done(msg)
    h.topic.close()
    await asyncio.wait_for(task, TIMEOUT)

    assert writer.events[-1] == ev.TurnFinished("You said: hi")
    assert isinstance(writer.events[0], ev.TurnStarted)
    assert [e for m, e in h.heard if m is msg] == writer.events


async def test_message_tool_publishes_to_the_chat(fake: FakeOpenAI, h: Harness) -> None:
    fake.script(
        Reply(tool_calls=[ToolCall("message", {"text": "Working on it…"})]), Reply(text="Done.")
    )

    msg = h.send("do it")
    writer = await h.done(msg)

    assert [(m.text, m.in_reply_to, m.chat_id) for m in h.published] == [
        ("Working on it…", msg.id, "1")
    ]
    assert writer.events[-1] == ev.TurnFinished("Done.")


async def test_queued_message_runs_as_a_follow_up_turn(
    fake: FakeOpenAI, h: Harness, agent: Agent
) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="one", gate=gate), Reply(text="two"))
    first = h.send("first")
    await fake.wait_requests(1)

    second = h.send("second")
    assert agent.queued(first.session_key) == 1
    gate.set()

    assert (await h.done(first)).events[-1] == ev.TurnFinished("one")
    followup = await h.done(second)
    assert followup.events[-1] == ev.TurnFinished("two")
    assert [m["content"] for m in fake.requests[1]["messages"][1:]] == ["first", "one", "second"]


async def test_steered_message_joins_the_running_turn(fake: FakeOpenAI, h: Harness) -> None:
    gate = asyncio.Event()
    fake.script(Reply(tool_calls=[ToolCall("time"), ToolCall("time")], gate=gate), Reply(text="ok"))
    first = h.send("what time?")
    await fake.wait_requests(1)

    second = h.send("and the date?")
    gate.set()

    writer = await h.done(first)
    absorbed = await h.done(second)
    assert of_type(writer.events, ev.SteeringInjected) == [
        ev.SteeringInjected("and the date?", second.id)
    ]
    assert absorbed.events == []  # only finished: its placeholder is cleaned up
    assert len(fake.requests) == 2  # no follow-up turn: the message was answered in the turn


async def test_full_steering_queue_tells_the_user(fake: FakeOpenAI, h: Harness) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="busy", gate=gate))
    h.send("first")
    await fake.wait_requests(1)

    queued = [h.send(f"more {i}") for i in range(10)]
    overflow = h.send("one too many")

    assert (await h.done(overflow)).events[-1] == ev.TurnFailed(STEERING_FULL)
    assert all(q.id not in h.writers for q in queued)
    gate.set()


async def test_stop_aborts_and_drops_the_queue(fake: FakeOpenAI, h: Harness) -> None:
    fake.script(Reply(text="a long answer", gate=asyncio.Event(), gate_after=2))
    first = h.send("talk")
    await fake.wait_until(lambda: fake.in_flight == 1, what="stream held")
    queued = h.send("queued")

    stop = await h.done(h.send("/stop@picobot_bot"))

    assert stop.events[-1] == ev.TurnFinished("Stopped.")
    aborted = await h.done(first)
    assert aborted.events[-1] == ev.TurnAborted("stopped")
    assert (await h.done(queued)).events == []
    await fake.wait_cancelled(1)
    assert len(fake.requests) == 1


async def test_parallel_sessions_through_the_loop(fake: FakeOpenAI, h: Harness) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="slow", gate=gate), Reply(text="fast"))
    slow = h.send("1", chat="a")
    await fake.wait_requests(1)

    fast = await h.done(h.send("2", chat="b"))

    assert fast.events[-1] == ev.TurnFinished("fast")
    assert not h.writers[slow.id].finished.is_set()
    gate.set()
    assert (await h.done(slow)).events[-1] == ev.TurnFinished("slow")


async def test_writer_crash_still_finishes_and_reports(fake: FakeOpenAI, h: Harness) -> None:
    h.fail_on = ev.TextDelta
    msg = h.send("hi")

    writer = await h.done(msg)

    assert writer.events[-1] == ev.TurnFailed(GENERIC_FAILURE)
    assert (msg, ev.TurnFailed(GENERIC_FAILURE)) in h.heard


async def test_broken_listener_does_not_break_the_turn(fake: FakeOpenAI, h: Harness) -> None:
    def broken(inbound: InboundMessage, event: ev.RunEvent) -> None:
        raise ValueError("listener bug")

    h.loop.listeners.insert(0, broken)

    writer = await h.done(h.send("hi"))

    assert writer.events[-1] == ev.TurnFinished("You said: hi")


async def test_drain_cancels_what_does_not_finish(fake: FakeOpenAI, h: Harness) -> None:
    fake.script(Reply(text="never ends", gate=asyncio.Event(), gate_after=2))
    msg = h.send("hi")
    await fake.wait_until(lambda: fake.in_flight == 1, what="stream held")

    assert not await h.loop.drain(0)

    writer = await h.done(msg)
    assert writer.events[-1] == ev.TurnAborted("shutdown")
    await fake.wait_cancelled(1)


async def test_sessions_beyond_the_limit_wait_as_messages(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    h = Harness(await make_agent(max_parallel_turns=1))
    gate = asyncio.Event()
    fake.script(Reply(text="a", gate=gate), Reply(text="b"))
    first = h.send("1", chat="a")
    await fake.wait_requests(1)

    waiting = h.send("2", chat="b")
    assert h.loop.running() == 2
    assert waiting.id not in h.writers  # no worker (no task) until one ends

    gate.set()
    assert (await h.done(first)).events[-1] == ev.TurnFinished("a")
    assert (await h.done(waiting)).events[-1] == ev.TurnFinished("b")
    assert await h.loop.drain(TIMEOUT)


async def test_a_reply_waiting_for_delivery_does_not_hold_other_sessions_back(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    # The limit counts turns, not deliveries: chat a's reply waits (its platform is down),
    # chat b's turn runs anyway.
    h = Harness(await make_agent(max_parallel_turns=1))
    fake.script(Reply(text="a"), Reply(text="b"))
    h.hold = down = asyncio.Event()
    stuck = h.send("1", chat="a")
    await h.wait_for_event(stuck, ev.TurnFinished)
    h.hold = None

    assert (await h.done(h.send("2", chat="b"))).events[-1] == ev.TurnFinished("b")
    assert not h.writers[stuck.id].finished.is_set()
    down.set()
    await h.done(stuck)
    assert await h.loop.drain(TIMEOUT)


async def test_stop_reaches_a_session_waiting_for_a_worker(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    h = Harness(await make_agent(max_parallel_turns=1))
    gate = asyncio.Event()
    fake.script(Reply(text="a", gate=gate))
    busy = h.send("1", chat="a")
    await fake.wait_requests(1)
    waiting = h.send("2", chat="b")

    stop = await h.done(h.send("/stop", chat="b"))

    assert stop.events[-1] == ev.TurnFinished("Stopped.")
    assert (await h.done(waiting)).events[-1] == ev.TurnAborted("stopped")
    gate.set()
    await h.done(busy)
    assert len(fake.requests) == 1  # the stopped turn never reached the model
    assert await h.loop.drain(TIMEOUT)


async def test_drain_drops_sessions_waiting_for_a_worker(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    h = Harness(await make_agent(max_parallel_turns=1))
    fake.script(Reply(text="never ends", gate=asyncio.Event(), gate_after=2))
    busy = h.send("1", chat="a")
    await fake.wait_until(lambda: fake.in_flight == 1, what="stream held")
    waiting = h.send("2", chat="b")

    assert not await h.loop.drain(0)

    assert (await h.done(busy)).events[-1] == ev.TurnAborted("shutdown")
    assert waiting.id not in h.writers  # left for the next start, as an interrupted turn
    assert h.loop.running() == 0


async def test_stop_right_behind_a_message_aborts_its_turn_before_it_began(
    fake: FakeOpenAI, h: Harness
) -> None:
    # Both arrive in one turn of the event loop (one polled batch): /stop cancels a turn
    # task that has not run yet, which then emits nothing itself.
    first = h.send("hi")
    stop = await h.done(h.send("/stop"))

    assert stop.events[-1] == ev.TurnFinished("Stopped.")
    assert (await h.done(first)).events == [ev.TurnAborted("stopped")]
    assert fake.requests == []
