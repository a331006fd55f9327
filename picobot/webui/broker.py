"""The run broker: one run's events, fanned out to every tab that watches it.

Each run keeps a bounded log of its events, numbered 1, 2, 3… (the SSE ``id:``). A subscriber
first gets the logged events after the id it asks for (0: all of them, or its ``Last-Event-ID``
on a reconnect), then the live ones, so a late or reconnecting tab sees no gap and no repeat.
The last event of a run is ``done``; a finished run's log is kept for ``ttl`` seconds.
A *standing* run never ends: a session's own stream of messages outside its runs (the web
chat's reminders), kept while watched; it is not among the session's runs (`runs_of`).

Nothing here waits for a subscriber: `publish` is synchronous. Each subscriber has a bounded
queue of live events; one that falls ``queue_size`` events behind is dropped (its iteration
ends with `Overflowed`) and resumes from the log by id when its client reconnects.

Error handling:
    `RunBroker.subscribe` raises `UnknownRun` for a run it does not know (never opened, or
    expired). Publishing to an unknown or finished run is ignored: the agent must not fail
    because nobody watches.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_LOG_SIZE",
    "Event",
    "Overflowed",
    "RunBroker",
    "RunsFull",
    "Subscription",
    "UnknownRun",
]

DEFAULT_LOG_SIZE = 4096  # events kept per run (a long reply is a few hundred deltas)
DEFAULT_QUEUE_SIZE = 256  # live events a subscriber may lag behind before it is dropped
DEFAULT_TTL = 300.0  # seconds a finished run's log stays available
DEFAULT_IDLE_TTL = 3600.0  # seconds an unfinished run may stay silent before it is dropped
DEFAULT_MAX_RUNS = 1000


class UnknownRun(LookupError):
    """No such run: never opened, or its log expired."""


class RunsFull(Exception):
    """`max_runs` runs are open and none has finished: a new one would evict a live run."""


class Overflowed(Exception):
    """The subscriber fell too far behind and was dropped; resume from `last_id`."""

    def __init__(self, last_id: int) -> None:
        super().__init__(f"subscriber fell behind after event {last_id}")
        self.last_id = last_id


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    name: str
    data: dict[str, Any]


@dataclass(eq=False)
class _Run:
    run_id: str
    session: str
    log: deque[Event]
    touched: float
    next_id: int = 1
    finished: bool = False
    standing: bool = False
    subscribers: set[Subscription] = field(default_factory=set)


class Subscription:
    """An async iterator over one run's events for one subscriber; ends after ``done``.

    :raises Overflowed: (from ``__anext__``) when it fell more than its queue size behind.
    """

    def __init__(self, run: _Run, backlog: list[Event], after: int, size: int) -> None:
        self._run = run
        self._backlog = deque(backlog)
        self._live: deque[Event] = deque()
        self._size = size
        self._wake = asyncio.Event()
        self._overflowed = False
        self._closed = False
        self.last_id = after  # the id of the last event handed out: where to resume

    def _push(self, event: Event) -> None:
        if self._closed or self._overflowed:
            return
        if len(self._live) >= self._size:
            self._overflowed = True  # let it go; it resumes from the log by id
            self._run.subscribers.discard(self)
        else:
            self._live.append(event)
        self._wake.set()

    def close(self) -> None:
        """End the iteration (after what is already queued); idempotent."""
        self._closed = True
        self._run.subscribers.discard(self)
        self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            queue = self._backlog or self._live
            if queue and not self._overflowed:
                event = queue.popleft()
                self.last_id = event.id
                if event.name == "done":
                    self.close()
                return event
            if self._overflowed:
                raise Overflowed(self.last_id)
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()


class RunBroker:
    """Runs by id (the web chat uses the `InboundMessage.id`), each with a log and subscribers.

    `clock` is injectable for tests (monotonic seconds).
    """

    def __init__(
        self,
        *,
        log_size: int = DEFAULT_LOG_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        ttl: float = DEFAULT_TTL,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        max_runs: int = DEFAULT_MAX_RUNS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_size = log_size
        self.queue_size = queue_size
        self.ttl = ttl
        self.idle_ttl = idle_ttl
        self.max_runs = max_runs
        self.clock = clock
        self._runs: dict[str, _Run] = {}  # insertion order: oldest first
        self._closed = False

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def open(self, run_id: str, session: str, *, standing: bool = False) -> None:
        """Start a run (idempotent: an existing run is kept). When `max_runs` are open, the
        oldest finished (or unwatched standing) run makes room; a live run is never evicted.

        :raises RunsFull: if every open run is still live.
        """
        self.sweep()
        if run_id in self._runs:
            return
        if len(self._runs) >= self.max_runs:
            spare = next(
                (
                    r.run_id
                    for r in self._runs.values()
                    if r.finished or (r.standing and not r.subscribers)
                ),
                None,
            )
            if spare is None:
                raise RunsFull(f"{len(self._runs)} runs in progress")
            self._drop(spare)
        log = deque[Event](maxlen=self.log_size)
        self._runs[run_id] = _Run(run_id, session, log, self.clock(), standing=standing)

    def discard(self, run_id: str) -> None:
        """Forget a run at once (e.g. its message was refused); its subscribers end."""
        self._drop(run_id)

    def publish(self, run_id: str, name: str, data: dict[str, Any] | None = None) -> None:
        """Append an event to the run's log and hand it to every subscriber. Never waits.

        ``done`` ends the run. Unknown or finished runs: ignored.
        """
        run = self._runs.get(run_id)
        if run is None or run.finished:
            return
        event = Event(run.next_id, name, data or {})
        run.next_id += 1
        run.log.append(event)
        run.touched = self.clock()
        if name == "done":
            run.finished = True
        for sub in list(run.subscribers):
            sub._push(event)
        if run.finished:
            run.subscribers.clear()  # each has `done` queued and closes itself on it

    def finish(self, run_id: str) -> None:
        """Publish ``done`` unless the run already ended."""
        self.publish(run_id, "done")

    def runs_of(self, session: str, *, finished: bool = False) -> Iterator[str]:
        """Ids of the session's runs (unfinished only, unless `finished`), oldest first."""
        for run in self._runs.values():
            if run.session == session and not run.standing and (finished or not run.finished):
                yield run.run_id

    def watched(self, run_id: str) -> bool:
        """Whether someone subscribes to `run_id` now."""
        run = self._runs.get(run_id)
        return run is not None and bool(run.subscribers)

    def subscribe(self, run_id: str, after: int | None = 0) -> Subscription:
        """Events of `run_id` with an id above `after`: the logged ones, then live ones
        (`after` None: live ones only).

        :raises UnknownRun: if the run is unknown or expired.
        """
        self.sweep()
        run = self._runs.get(run_id)
        if run is None:
            raise UnknownRun(run_id)
        if after is None:
            after = run.next_id - 1
        backlog = [e for e in run.log if e.id > after]
        sub = Subscription(run, backlog, after, self.queue_size)
        if self._closed or run.finished:
            sub.close()  # it still hands out its backlog (ending with `done`) first
        else:
            run.subscribers.add(sub)
        return sub

    def sweep(self) -> None:
        """Drop finished runs older than `ttl` and silent unfinished ones older than `idle_ttl`."""
        now = self.clock()
        expired = [
            run.run_id
            for run in self._runs.values()
            if now - run.touched >= (self.ttl if run.finished else self.idle_ttl)
            and not (run.standing and run.subscribers)  # a watched stream is kept
        ]
        for run_id in expired:
            self._drop(run_id)

    def close(self) -> None:
        """Shutting down: every subscription ends after what it already has queued."""
        self._closed = True
        for run in self._runs.values():
            for sub in list(run.subscribers):
                sub.close()

    def _drop(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            for sub in list(run.subscribers):
                sub.close()
