"""The scheduler: validates new entries, fires due ones through narrow callables.

    create() ─► EntryStore ─► run(): wait for the next due entry ─► fire:
        run_agent false: "⏰ text"               ─► deliver(msg)  (the outbound door: outbox)
        run_agent true:  run_turn(session, text) ─► deliver(answer)
    then a one-shot is deleted, a recurring entry moved to its next occurrence.

An entry is advanced only after `deliver` returned (the message is in the outbox), so a kill
loses nothing; a kill between the two repeats at most that one message (a stop waits for the
advance). An entry more than `grace` seconds late (the daemon was down) is skipped with a log
line, not fired.

In cluster mode the store is in Redis: any node creates, lists and cancels; `run()` runs only
on the holder of the `scheduler` lease, and the store fences its firing (`may_fire`, `fired`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from cronsim import CronSim, CronSimError

from picobot.config import DEFAULT_MAX_PER_CHAT, DEFAULT_SCHEDULE_GRACE
from picobot.core.messages import OutboundMessage
from picobot.core.tasks import to_the_end
from picobot.storage.schedule import Entry, EntryStore, chat_key

log = logging.getLogger("picobot.schedule")

Deliver = Callable[[OutboundMessage], Awaitable[object]]
RunTurn = Callable[[str, str], Awaitable[str]]  # (session, instruction) -> the answer
Clock = Callable[[], float]

MIN_INTERVAL = 60.0  # seconds between two firings of a recurring entry, at least
MAX_TEXT = 2000
MAX_WAIT = 60.0  # the loop looks again at least this often (clock jumps, missed wakes)
RETRY_AFTER = 60.0  # seconds before an entry whose delivery failed is tried again
REMINDER_PREFIX = "⏰ "


class ScheduleError(ValueError):
    """The scheduler refused a request; the message says why (shown to the model or user)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where an entry delivers: the chat (and thread) it was created in."""

    channel: str
    chat_id: str
    thread: str | None = None
    is_group: bool = False

    @property
    def chat(self) -> str:
        return chat_key(self.channel, self.chat_id)


def local_timezone() -> tzinfo:
    """The host's timezone (with its DST rules when /etc/localtime is readable)."""
    from zoneinfo import ZoneInfo

    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f)
    except (OSError, ValueError):
        zone = datetime.now().astimezone().tzinfo
        assert zone is not None
        return zone


def next_occurrence(cron: str, after: float, tz: tzinfo) -> float:
    """The first time strictly after `after` matching `cron`, evaluated in `tz`."""
    return next(CronSim(cron, datetime.fromtimestamp(after, tz))).timestamp()


def parse_cron(cron: str, now: float, tz: tzinfo) -> float:
    """The first occurrence of a valid 5-field `cron` after `now`.

    :raises ScheduleError: for a wrong field count, an invalid expression, or one that fires
        more often than every `MIN_INTERVAL` seconds.
    """
    if len(cron.split()) != 5:
        raise ScheduleError(
            "cron needs exactly 5 fields: minute hour day-of-month month day-of-week"
        )
    try:
        times = CronSim(cron, datetime.fromtimestamp(now, tz))
        first, second, third = (next(times).timestamp() for _ in range(3))
    except (CronSimError, StopIteration) as exc:
        raise ScheduleError(f"invalid cron expression {cron!r}: {exc or 'never fires'}") from None
    if min(second - first, third - second) < MIN_INTERVAL:
        raise ScheduleError(f"a recurring entry may fire at most once every {MIN_INTERVAL:g} s")
    return first


def firing_id(entry: Entry) -> str:
    """The outbox id of one firing of `entry`."""
    return f"schedule-{entry.id}-{int(entry.due)}"


class Scheduler:
    """Creates, lists, cancels and fires entries. `run()` is the daemon's task.

    `clock` (epoch seconds) is injected so tests move time by hand and call `fire_due()`.
    `poll`: the loop looks at the store at least this often (entries another node added).
    """

    def __init__(
        self,
        store: EntryStore,
        deliver: Deliver,
        run_turn: RunTurn | None = None,
        *,
        clock: Clock = time.time,
        tz: tzinfo | None = None,
        grace: float = DEFAULT_SCHEDULE_GRACE,
        max_per_chat: int = DEFAULT_MAX_PER_CHAT,
        poll: float = MAX_WAIT,
    ) -> None:
        self.store = store
        self.deliver = deliver
        self.run_turn = run_turn
        self.clock = clock
        self.tz = tz or local_timezone()
        self.grace = grace
        self.max_per_chat = max_per_chat
        self.poll = poll
        self._failing = False  # the store failed last round (logged once per episode)
        self._firing: dict[int, asyncio.Task[None]] = {}
        self._retry_at: dict[int, float] = {}  # entry id -> when a failed delivery retries
        self._wake = asyncio.Event()

    # -- requests ---------------------------------------------------------------------------

    async def create(
        self,
        target: Target,
        text: str,
        *,
        at: str | None = None,
        in_seconds: float | None = None,
        cron: str | None = None,
        run_agent: bool = False,
    ) -> Entry:
        """Add an entry for `target`'s chat.

        :raises ScheduleError: naming what is wrong (nothing is stored then).
        """
        text = text.strip()
        if not text:
            raise ScheduleError("text must not be empty")
        if len(text) > MAX_TEXT:
            raise ScheduleError(f"text is too long (at most {MAX_TEXT} characters)")
        if sum(x is not None for x in (at, in_seconds, cron)) != 1:
            raise ScheduleError("give exactly one of at, in_seconds or cron")
        now = self.clock()
        if at is not None:
            due = self._parse_at(at, now)
        elif in_seconds is not None:
            if isinstance(in_seconds, bool) or not isinstance(in_seconds, int | float):
                raise ScheduleError("in_seconds must be a number of seconds")
            if not 0 < in_seconds <= 10 * 366 * 86400:
                raise ScheduleError("in_seconds must be greater than 0 (and at most 10 years)")
            due = now + in_seconds
        else:
            assert cron is not None
            cron = " ".join(str(cron).split())
            due = parse_cron(cron, now, self.tz)
        entry = await self.store.add(
            channel=target.channel,
            chat_id=target.chat_id,
            thread=target.thread,
            is_group=target.is_group,
            text=text,
            cron=cron,
            run_agent=run_agent,
            due=due,
            limit=self.max_per_chat,
        )
        if entry is None:
            raise ScheduleError(
                f"this chat already has {self.max_per_chat} entries (schedule.max_per_chat);"
                " cancel one first"
            )
        self._wake.set()
        return entry

    @staticmethod
    def _parse_at(at: str, now: float) -> float:
        try:
            when = datetime.fromisoformat(str(at).strip())
        except ValueError:
            raise ScheduleError(
                f"at {at!r} is not an ISO 8601 date and time, e.g. 2026-12-01T09:00:00+01:00"
            ) from None
        if when.tzinfo is None:
            raise ScheduleError(f"at {at!r} needs a UTC offset, e.g. 2026-12-01T09:00:00+01:00")
        due = when.timestamp()
        if due <= now:
            raise ScheduleError(f"at {at!r} is in the past")
        return due

    async def entries(self, chat: str) -> list[Entry]:
        return await self.store.for_chat(chat)

    async def cancel(self, chat: str, entry_id: int) -> Entry:
        """:raises ScheduleError: if the chat has no entry with that id (another chat's
        entries cannot be seen or cancelled)."""
        entry = await self.store.get(entry_id)
        if entry is None or entry.chat != chat or not await self.store.delete(entry_id):
            raise ScheduleError(f"no entry #{entry_id} in this chat (see /reminders)")
        self._retry_at.pop(entry_id, None)
        self._wake.set()
        return entry

    def describe(self, entry: Entry) -> str:
        """One line: ``#ID when (repeat) [agent] text``."""
        when = datetime.fromtimestamp(entry.due, self.tz).isoformat(timespec="minutes")
        repeat = f" (cron {entry.cron})" if entry.cron else ""
        agent = " [runs the agent]" if entry.run_agent else ""
        text = entry.text if len(entry.text) <= 80 else entry.text[:79] + "…"
        return f"#{entry.id} {when}{repeat}{agent}: {text}"

    # -- commands (/reminders, /cancel) ------------------------------------------------------

    async def reminders_text(self, chat: str) -> str:
        entries = await self.entries(chat)
        if not entries:
            return "No reminders in this chat."
        return "\n".join(self.describe(e) for e in entries)

    async def cancel_text(self, chat: str, arg: str) -> str:
        number = arg.strip().lstrip("#")
        if not number.isdigit():
            return "Usage: /cancel ID (the #ID from /reminders)"
        try:
            entry = await self.cancel(chat, int(number))
        except ScheduleError as exc:
            return f"error: {exc}"
        return f"Cancelled #{entry.id}."

    # -- firing -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Fire entries as they come due, until cancelled."""
        try:
            while True:
                self._wake.clear()
                delay = await self._round()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            # An entry cut here is not advanced: it fires again on the next start.
            firing = list(self._firing.values())
            for task in firing:
                task.cancel()
            await asyncio.gather(*firing, return_exceptions=True)

    async def _round(self) -> float:
        """Fire what is due; how long to wait for the next round. A store that fails (Redis
        unreachable) is tried again after `poll` seconds: the loop never dies of it."""
        try:
            await self.fire_due(wait=False)
            delay = await self._next_delay()
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "schedule: the store failed (%s: %s); trying again", type(exc).__name__, exc
                )
            self._failing = True
            return self.poll
        if self._failing:
            log.info("schedule: the store answers again")
        self._failing = False
        return delay

    async def _next_delay(self) -> float:
        now = self.clock()
        candidates = list(self._retry_at.values())
        upcoming = await self.store.next_due(now)
        if upcoming is not None:
            candidates.append(upcoming)
        return min(self.poll, max(0.0, min(candidates, default=now + self.poll) - now))

    async def reconcile(self, recorded: Callable[[str], Awaitable[bool]]) -> int:
        """Before the outbox resumes (at start): advance the due entries whose firing the outbox
        already holds (a kill came between recording it and advancing the entry), so they are
        not fired a second time. Returns how many."""
        now, count = self.clock(), 0
        for entry in await self.store.due(now):
            if await recorded(firing_id(entry)):
                await self._advance(entry, now)
                count += 1
        return count

    async def fire_due(self, *, wait: bool = True) -> None:
        """Fire every entry due now (not already firing or waiting for a retry)."""
        now = self.clock()
        for entry in await self.store.due(now):
            if entry.id in self._firing or self._retry_at.get(entry.id, 0.0) > now:
                continue
            task = asyncio.create_task(self._fire(entry, now), name=f"schedule #{entry.id}")
            self._firing[entry.id] = task
            task.add_done_callback(functools.partial(self._fired, entry.id))
        if wait:
            await self.settle()

    async def settle(self) -> None:
        """Wait until no entry is firing (the ones firing now are delivered and advanced)."""
        while self._firing:
            await asyncio.gather(*self._firing.values(), return_exceptions=True)

    def _fired(self, entry_id: int, task: asyncio.Task[None]) -> None:
        self._firing.pop(entry_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("schedule: entry #%d: the store failed (%s)", entry_id, exc)
        self._wake.set()

    async def _fire(self, entry: Entry, now: float) -> None:
        if not await self.store.may_fire(entry):  # cancelled meanwhile, or not ours to fire
            return
        late = now - entry.due
        if late > self.grace:
            log.warning(
                "schedule: entry #%d is %.0f s late (over schedule.grace %.0f s): skipped",
                entry.id,
                late,
                self.grace,
            )
            await self._advance(entry, now)
            return
        try:
            text = await self._message(entry)
            if entry.run_agent and not await self.store.may_fire(entry):
                return  # the turn took a while: the entry was cancelled or the lease lost
            await self.deliver(
                OutboundMessage(
                    channel=entry.channel,
                    chat_id=entry.chat_id,
                    text=text,
                    # Stable per firing: a repeat after a kill is the same outbox record.
                    id=firing_id(entry),
                    thread=entry.thread,
                    is_group=entry.is_group,
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._retry_at[entry.id] = self.clock() + RETRY_AFTER
            log.warning(
                "schedule: entry #%d could not be delivered (%s); retrying in %g s",
                entry.id,
                exc,
                RETRY_AFTER,
            )
            return
        self._retry_at.pop(entry.id, None)
        log.info("schedule: entry #%d fired in %s", entry.id, entry.channel)
        # In the outbox now, so delivered soon: a stop must not cut the advance (the next start
        # would fire the entry again).
        await to_the_end(self._advance(entry, now))

    async def _message(self, entry: Entry) -> str:
        if not entry.run_agent:
            return REMINDER_PREFIX + entry.text
        if self.run_turn is None:
            raise RuntimeError("no agent to run the entry's turn")
        answer = await self.run_turn(entry.session, entry.text)
        return answer.strip() or REMINDER_PREFIX + entry.text

    async def _advance(self, entry: Entry, now: float) -> None:
        due: float | None = None
        if entry.cron is not None:
            try:
                due = next_occurrence(entry.cron, max(now, entry.due), self.tz)
            except (CronSimError, StopIteration):
                log.warning("schedule: entry #%d never fires again: removed", entry.id)
        if not await self.store.fired(entry, due):
            log.info("schedule: entry #%d not advanced (cancelled, or not ours)", entry.id)

    def statistics(self) -> dict[str, Any]:
        return {"firing": len(self._firing), "retrying": len(self._retry_at)}
