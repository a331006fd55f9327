"""The agent loop: routes inbound messages to turns and each turn's events to a reply writer.

    inbound ─► slash command ─► answered at once, even while a turn runs (/stop must be)
            ─► session busy  ─► its steering queue (full: the user is told)
            ─► session idle  ─► a session worker: the turn, then follow-up turns for
                                whatever is still queued when it ends

At most `max_parallel_turns` sessions are started and still before the end of their first
turn; the sessions beyond wait as their first message, in order. A burst of thousands of
conversations then holds thousands of messages, not of tasks waiting for a turn's slot
(benchmarks/realpath.py: the garbage collector walked those, about 10 µs of a message's
CPU). A session gives its place up when its turn ends, not when its reply is delivered: a
platform that is down holds its own chats' replies, never the other channels' turns.
`/stop` and `/new` start a waiting session at once, so they find its turn to stop.

Listeners see every event of every turn, as `listener(inbound, event)`; the reply writer of the
turn's inbound message sees them too, and its `finish()` is always called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from picobot.agent.commands import parse_command
from picobot.agent.turns import GENERIC_FAILURE, Agent
from picobot.core import events as ev
from picobot.core import metrics
from picobot.core.bus import Topic
from picobot.core.channel import ReplyWriter
from picobot.core.errors import StorageError
from picobot.core.messages import InboundMessage, Kind, Post, new_id, reply_to

__all__ = ["Agent", "AgentLoop", "BufferedReply", "Listener", "ReplyWriter", "WriterFactory"]

log = logging.getLogger("picobot.agent")

SHUTDOWN_GRACE = 1.0  # seconds a cancelled turn gets to clean up

Publish = Post  # the outbound door
Listener = Callable[[InboundMessage, ev.RunEvent], None]

_ENDS = (ev.TurnFinished, ev.TurnAborted, ev.TurnFailed)

STEERING_FULL = (
    "⏳ Too many messages are waiting, so I dropped this one. Wait for my answer, or send /stop."
)


class BufferedReply:
    """Sends the whole reply at the end: for channels that do not stream."""

    def __init__(self, inbound: InboundMessage, publish: Publish) -> None:
        self.inbound = inbound
        self.publish = publish

    async def feed(self, event: ev.RunEvent) -> None:
        if isinstance(event, ev.TurnFinished) and event.text.strip():
            await self.publish(reply_to(self.inbound, event.text))
        elif isinstance(event, ev.TurnFailed):
            await self.publish(reply_to(self.inbound, event.message))

    async def finish(self) -> None:
        await self.publish(reply_to(self.inbound, "", kind=Kind.DONE))


WriterFactory = Callable[[InboundMessage], ReplyWriter]


class AgentLoop:
    """Consumes the inbound topic until it ends; `drain()` waits for running turns.

    `publish` (the outbound door's `post`) lets the `message` tool write to the chat.
    Every inbound message gets exactly one writer, finished exactly once: a message absorbed
    into a running turn by steering gets a writer that is only finished (to clean up its
    placeholder and typing); the turn's reply goes to the writer of the turn's message.
    """

    def __init__(
        self,
        agent: Agent,
        inbound: Topic[InboundMessage],
        make_writer: WriterFactory,
        listeners: list[Listener] | None = None,
        *,
        publish: Publish | None = None,
    ) -> None:
        self.agent = agent
        self.inbound = inbound
        self.make_writer = make_writer
        self.listeners = listeners if listeners is not None else []
        self.publish = publish
        self._active: set[str] = set()  # sessions with a worker, or waiting for one
        self._steered: dict[str, dict[str, InboundMessage]] = {}  # session -> id -> queued msg
        self._workers: set[asyncio.Task[None]] = set()
        self._sessions = 0  # session workers running
        self._waiting: deque[InboundMessage] = deque()  # the first messages of sessions beyond

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    async def run(self) -> None:
        async for msg in self.inbound:
            self.submit(msg)

    def submit(self, msg: InboundMessage) -> None:
        """Route one inbound message; returns at once (the work runs in tasks)."""
        key = msg.session_key
        command = parse_command(msg.text)
        if command is not None:
            if command.name in ("stop", "new"):
                self._start_waiting(key)  # so the command finds the turn it stops
            self._spawn(self.handle(msg), f"command {key}")
        elif key in self._active:
            if self.agent.steer(key, msg.text, message_id=msg.id, inbound=msg):
                self._steered.setdefault(key, {})[msg.id] = msg
            else:
                self._spawn(self._reply(msg, ev.TurnFailed(STEERING_FULL)), f"full {key}")
        else:
            self._active.add(key)
            self._waiting.append(msg)
            self._fill()

    def _fill(self) -> None:
        """Start waiting sessions, oldest first, while fewer than the limit run."""
        while self._waiting and self._sessions < self.agent.config.max_parallel_turns:
            self._start(self._waiting.popleft())

    def _start(self, msg: InboundMessage) -> None:
        self._sessions += 1
        self._spawn(self._session(msg.session_key, msg), f"session {msg.session_key}")

    def _start_waiting(self, key: str) -> None:
        for msg in self._waiting:
            if msg.session_key == key:
                self._waiting.remove(msg)
                self._start(msg)
                return

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def handle(self, msg: InboundMessage) -> None:
        """Answer one message now (no steering): its turn's events go to a new writer."""
        await self._play(
            msg, self.agent.run_turn(msg.session_key, msg.text, inbound=msg, publish=self.publish)
        )

    async def _session(self, key: str, msg: InboundMessage) -> None:
        # One worker per busy session: the turn, then follow-ups, until nothing is queued.
        started_here = True  # this session holds one of the places counted by `_sessions`

        def give_place_up() -> None:
            nonlocal started_here
            if started_here:
                started_here = False
                self._sessions -= 1
                self._fill()

        try:
            turn = self.agent.run_turn(key, msg.text, inbound=msg, publish=self.publish)
            while True:
                started = time.monotonic()
                await self._play(msg, turn, on_end=give_place_up)
                elapsed = time.monotonic() - started
                metrics.child(metrics.TURN_SECONDS, msg.channel).observe(elapsed)
                queued = self.agent.take_followup(key)
                if not queued:
                    return  # no await from here to `_active.discard`: nothing slips through
                msg = self._steered.get(key, {}).pop(queued[0].message_id or "", msg)
                turn = self.agent.run_followup(key, queued, inbound=msg, publish=self.publish)
        finally:
            self._active.discard(key)
            try:
                # Messages /stop dropped from the queue: clean up their placeholders.
                for dropped in self._steered.pop(key, {}).values():
                    await self._finish(self.make_writer(dropped))
            finally:
                give_place_up()

    async def _play(
        self,
        msg: InboundMessage,
        events: AsyncIterator[ev.RunEvent],
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """The events to the message's writer; `on_end` is told when the turn's last event
        comes, before the writer delivers it."""
        writer = self.make_writer(msg)
        ended = False
        try:
            async for event in events:
                ended = isinstance(event, _ENDS)
                if ended and on_end is not None:
                    on_end()
                self._notify(msg, event)
                await writer.feed(event)
                if isinstance(event, ev.SteeringInjected) and event.message_id:
                    absorbed = self._steered.get(msg.session_key, {}).pop(event.message_id, None)
                    if absorbed is not None:
                        await self._finish(self.make_writer(absorbed))
        except asyncio.CancelledError:
            if not ended:  # shutdown cut the turn short: tell the writer, then go
                await self._end(msg, writer, ev.TurnAborted(ev.SHUTDOWN))
            raise
        except StorageError as exc:  # the reply was not recorded: the turn runs again
            log.warning("reply in %s not recorded: %s", msg.session_key, exc)
        except Exception:
            log.exception("turn crashed in %s", msg.session_key)
            if not ended:
                await self._end(msg, writer, ev.TurnFailed(GENERIC_FAILURE))
        finally:
            # Leaving early (writer crash, cancellation) closes the events: the turn aborts.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                try:  # (not contextlib.suppress: this runs for every turn)
                    await aclose()
                except Exception:
                    pass
            await self._finish(writer)

    async def _reply(self, msg: InboundMessage, event: ev.RunEvent) -> None:
        """A one-event answer that bypasses the agent (e.g. the queue is full)."""

        async def events() -> AsyncIterator[ev.RunEvent]:
            yield ev.TurnStarted(new_id(), msg.session_key)
            yield event

        await self._play(msg, events())

    async def _end(self, msg: InboundMessage, writer: ReplyWriter, event: ev.RunEvent) -> None:
        self._notify(msg, event)
        try:
            await writer.feed(event)
        except Exception:
            log.exception("reply writer failed in %s", msg.session_key)

    async def _finish(self, writer: ReplyWriter) -> None:
        try:
            await writer.finish()
        except StorageError as exc:  # the reply was not recorded: the turn runs again
            log.warning("reply not recorded: %s", exc)
        except Exception:
            log.exception("reply writer failed to finish")

    def _notify(self, msg: InboundMessage, event: ev.RunEvent) -> None:
        for listener in self.listeners:
            try:
                listener(msg, event)
            except Exception:  # a broken subscriber must not break the turn
                log.exception("run event listener failed")

    def running(self) -> int:
        """How many sessions have a turn running or waiting (what `drain` waits for)."""
        return len(self._active)

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for running turns and the sessions waiting for a worker;
        cancel the rest (a waiting session's message runs again at the next start, as an
        interrupted turn's does). True if all finished."""
        try:
            async with asyncio.timeout(timeout):
                while self._workers:
                    await asyncio.wait(set(self._workers))
            return True
        except TimeoutError:
            pass
        for msg in self._waiting:
            self._active.discard(msg.session_key)
        self._waiting.clear()
        pending = set(self._workers)
        for task in pending:
            task.cancel()
        # Bounded: a cancelled turn's writer may still wait on a delivery (a chat in a long
        # flood wait); closing the dispatcher cancels that, and the daemon drains again.
        await asyncio.wait(pending, timeout=SHUTDOWN_GRACE)
        return False
