"""Lanes: one per (channel, chat), each a task delivering its jobs in order.

Chats never wait for each other: a lane sleeping out a flood wait (`RateLimited.retry_after`)
holds only its own chat. A lane ends as soon as it has nothing left to deliver, and the
chat's next job starts a new one: memory follows the chats with work in hand, and the cyclic
garbage collector never walks thousands of idle lanes (benchmarks/realpath.py: about 15 µs
of a message's CPU, with one lane per chat kept a minute).

Memory stays flat while a platform is down: a lane keeps at most `spill_after` jobs in memory.
Durable replies beyond that stay only in the outbox, where the lane reads them back, oldest
first, when it gets to them (a `Spilled` entry counts them); so do the replies a restart finds.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from picobot.core import metrics
from picobot.core.errors import ChannelError, Superseded
from picobot.core.messages import OutboundMessage
from picobot.core.tasks import cancel_and_wait

log = logging.getLogger("picobot.dispatch")

SPILL_AFTER = 16  # jobs a lane keeps in memory; durable replies past that wait on disk


@dataclass(slots=True, eq=False)
class Job:
    """One message on its way: `durable` when the outbox holds it; `progress` maps the chunks a
    previous attempt (or run) already delivered to their platform message ids."""

    msg: OutboundMessage
    durable: bool = False
    progress: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Spilled:
    """`count` durable replies of this chat that wait in the outbox, next in line."""

    count: int


Key = tuple[str, str]  # (channel, chat id)
Deliver = Callable[[Job], Awaitable[list[str]]]
# The oldest pending reply of a chat in the outbox, leaving out the ids a lane holds.
Fetch = Callable[[Key, Collection[str]], Awaitable[Job | None]]
Settle = Callable[[Job, "list[str] | BaseException"], None]


class Lane:
    """Delivers one chat's jobs, one after another."""

    def __init__(
        self,
        key: Key,
        deliver: Deliver,
        fetch: Fetch | None,
        settle: Settle,
        on_idle: Callable[[Lane], None],
        spill_after: int,
    ) -> None:
        """Starts the lane's task, which begins at the next turn of the event loop: put its
        first job (or spilled count) before then."""
        self.key = key
        self._deliver = deliver
        self._fetch = fetch
        self._settle = settle
        self._on_idle = on_idle  # told when the lane ends
        self._spill_after = spill_after if fetch is not None else 1 << 62
        self._entries: deque[Job | Spilled] = deque()
        self._spilled = 0  # replies counted by `Spilled` entries
        self._current: Job | None = None
        self.stopped: Superseded | None = None  # why `stop()` ended the lane
        self.task = asyncio.create_task(self._run(), name=f"lane {key[0]}:{key[1]}")

    def put(self, job: Job) -> None:
        if job.durable and (self._spilled or len(self._entries) >= self._spill_after):
            self.put_spilled(1)
            return
        self._entries.append(job)

    def put_spilled(self, count: int, *, ahead: bool = False) -> None:
        """`count` more of this chat's replies wait in the outbox, after what is queued (or
        `ahead` of it: older replies this lane did not know of)."""
        end = (self._entries[0] if ahead else self._entries[-1]) if self._entries else None
        if isinstance(end, Spilled):
            end.count += count
        elif ahead:
            self._entries.appendleft(Spilled(count))
        else:
            self._entries.append(Spilled(count))
        self._spilled += count

    @property
    def held(self) -> int:
        """Jobs in memory (at most `spill_after`, plus the live updates in between)."""
        return sum(isinstance(e, Job) for e in self._entries)

    def __len__(self) -> int:
        return self.held + self._spilled

    @property
    def owed(self) -> int:
        """Durable replies this lane will deliver: in memory, spilled, and the current one."""
        current = self._current is not None and self._current.durable
        return (
            sum(isinstance(e, Job) and e.durable for e in self._entries) + self._spilled + current
        )

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing in delivery."""
        return not self._entries and self._current is None

    def jobs(self) -> list[Job]:
        return [e for e in self._entries if isinstance(e, Job)]

    async def join(self) -> None:
        """Wait until the lane has delivered everything and ended."""
        await asyncio.wait([self.task])

    async def _run(self) -> None:
        while True:
            if not self._entries:
                # Nothing between this check and leaving the map awaits: a job put from now
                # on starts a new lane, after this one's last delivery.
                self._on_idle(self)
                return
            job = await self._next()
            if job is None:
                continue
            self._current = job
            try:
                self._settle(job, await self._deliver(job))
            except asyncio.CancelledError:
                self._settle(job, self.stopped or asyncio.CancelledError())
                raise
            except Superseded as exc:  # another node delivers this chat now: stop here
                log.info("%s:%s: %s; lane stopped", *self.key, exc)
                self.stopped = exc
                self._settle(job, exc)
                self._on_idle(self)
                for other in self.jobs():
                    self._settle(other, exc)
                return
            except Exception as exc:
                if not isinstance(exc, ChannelError):  # a bug, not a platform answer: say so
                    log.exception("delivery to %s:%s crashed", *self.key)
                self._settle(job, exc)
            finally:
                self._current = None

    async def _next(self) -> Job | None:
        head = self._entries[0]
        if isinstance(head, Job):
            self._entries.popleft()
            return head
        assert self._fetch is not None  # nothing spills without an outbox
        held = [e.msg.id for e in self._entries if isinstance(e, Job)]
        try:
            job = await self._fetch(self.key, held)
        finally:
            head.count -= 1
            self._spilled -= 1
            if not head.count:
                self._entries.remove(head)
        return job


class Lanes:
    """The lanes of every chat; `put` queues a job on its chat's lane (made on demand)."""

    def __init__(
        self,
        deliver: Deliver,
        fetch: Fetch | None = None,
        spill_after: int = SPILL_AFTER,
    ) -> None:
        self._deliver = deliver
        self._fetch = fetch
        self._spill_after = spill_after
        self._lanes: dict[Key, Lane] = {}
        # Who waits for which message: weak, so a dropped future costs no memory.
        self._waiting: weakref.WeakValueDictionary[str, asyncio.Future[list[str]]]
        self._waiting = weakref.WeakValueDictionary()

    def put(self, job: Job, *, spilled: bool = False) -> asyncio.Future[list[str]]:
        """Queue `job` (`spilled`: a durable one, as the outbox's next reply of its chat, read
        back in the outbox's order); the future gives its platform message ids (or its error)."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._waiting[job.msg.id] = future
        lane = self._lane(job.msg.lane_key)
        if spilled:
            lane.put_spilled(1)
        else:
            lane.put(job)
        return future

    def put_spilled(self, key: Key, count: int, *, ahead: bool = False) -> None:
        """`count` pending replies of chat `key` wait in the outbox (after a restart)."""
        self._lane(key).put_spilled(count, ahead=ahead)

    def _lane(self, key: Key) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(
                key,
                self._deliver,
                self._fetch,
                self._settle,
                self._idle,
                self._spill_after,
            )
            metrics.LANES.set(len(self._lanes))
        return lane

    def _settle(self, job: Job, result: list[str] | BaseException) -> None:
        future = self._waiting.pop(job.msg.id, None)
        if future is None or future.done():  # nobody waits (any more)
            return
        if isinstance(result, asyncio.CancelledError):
            future.cancel()
        elif isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def __len__(self) -> int:
        return len(self._lanes)

    def idle(self, key: Key) -> bool:
        """Whether chat `key`'s lane has nothing queued and nothing in delivery (or no lane)."""
        lane = self._lanes.get(key)
        return lane is None or lane.idle

    def owed(self, key: Key) -> int:
        """Durable replies the lane of chat `key` will deliver (0: no lane)."""
        lane = self._lanes.get(key)
        return lane.owed if lane is not None else 0

    async def stop(self, which: Callable[[Key], bool], error: Superseded) -> int:
        """End the lanes of the chats `which` selects now; their jobs fail with `error`
        (cluster mode: another node delivers to these chats now). Returns how many."""
        lanes = [lane for key, lane in self._lanes.items() if which(key)]
        for lane in lanes:
            lane.stopped = error
            self._idle(lane)
        await cancel_and_wait(*(lane.task for lane in lanes))
        for lane in lanes:
            for job in lane.jobs():
                self._settle(job, error)
        return len(lanes)

    def queued(self) -> int:
        """Messages waiting on every lane, in memory or in the outbox."""
        return sum(len(lane) for lane in self._lanes.values())

    def held(self) -> int:
        """Messages waiting on every lane in memory (at most `spill_after` a lane)."""
        return sum(lane.held for lane in self._lanes.values())

    def _idle(self, lane: Lane) -> None:
        if self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]
            metrics.LANES.set(len(self._lanes))

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every lane to empty; True if all did."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(lane.join() for lane in list(self._lanes.values())))
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Cancel every lane; the futures of undelivered jobs are cancelled."""
        tasks = [lane.task for lane in self._lanes.values()]
        await cancel_and_wait(*tasks)
        self._lanes.clear()
        for future in list(self._waiting.values()):
            future.cancel()


def _retrieve(future: asyncio.Future[list[str]]) -> None:
    # Most submitters never await the result; the failure was logged already.
    if not future.cancelled():
        future.exception()
