"""Lanes: one per (channel, chat), each a task delivering its jobs in order.

Chats never wait for each other: a lane sleeping out a flood wait (`RateLimited.retry_after`)
holds only its own chat. Idle lanes end by themselves, so memory follows the active chats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from picobot.core import metrics
from picobot.core.errors import ChannelError
from picobot.core.messages import OutboundMessage

log = logging.getLogger("picobot.dispatch")


@dataclass(slots=True, eq=False)
class Job:
    """One message on its way: `durable` when the outbox holds it; `progress` maps the chunks a
    previous attempt (or run) already delivered to their platform message ids."""

    msg: OutboundMessage
    durable: bool = False
    progress: dict[int, str] = field(default_factory=dict)


Deliver = Callable[[Job], Awaitable[list[str]]]


class Lane:
    """Delivers one chat's jobs, one after another."""

    def __init__(
        self,
        key: tuple[str, str],
        deliver: Deliver,
        on_idle: Callable[[Lane], None],
        idle_after: float,
    ) -> None:
        self.key = key
        self._deliver = deliver
        self._on_idle = on_idle
        self._idle_after = idle_after
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[list[str]]]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"lane {key[0]}:{key[1]}")

    def put(self, job: Job, future: asyncio.Future[list[str]]) -> None:
        self._queue.put_nowait((job, future))

    def __len__(self) -> int:
        return self._queue.qsize()

    async def join(self) -> None:
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle_after):
                    job, future = await self._queue.get()
            except TimeoutError:
                if self._queue.empty():
                    self._on_idle(self)
                    return
                continue
            try:
                result = await self._deliver(job)
                if not future.done():  # the submitter may have given up meanwhile
                    future.set_result(result)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:
                if not isinstance(exc, ChannelError):  # a bug, not a platform answer: say so
                    log.exception("delivery to %s:%s crashed", *self.key)
                if not future.done():
                    future.set_exception(exc)
            finally:
                self._queue.task_done()


class Lanes:
    """The lanes of every chat; `put` queues a job on its chat's lane (made on demand)."""

    def __init__(self, deliver: Deliver, idle_after: float) -> None:
        self._deliver = deliver
        self._idle_after = idle_after
        self._lanes: dict[tuple[str, str], Lane] = {}

    def put(self, job: Job) -> asyncio.Future[list[str]]:
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        key = job.msg.lane_key
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(key, self._deliver, self._idle, self._idle_after)
            metrics.LANES.set(len(self._lanes))
        lane.put(job, future)
        return future

    def __len__(self) -> int:
        return len(self._lanes)

    def queued(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

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
        """Cancel every lane; undelivered jobs' futures are cancelled."""
        tasks = [lane.task for lane in self._lanes.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()


def _retrieve(future: asyncio.Future[list[str]]) -> None:
    # Most submitters never await the result; the failure was logged already.
    if not future.cancelled():
        future.exception()
