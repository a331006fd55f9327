"""The turn journal: a turn's start and end recorded, so a restart runs again only the turns
that never finished, or whose reply could not be recorded (SQLite: `Outbox`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

from picobot.core.errors import StorageError
from picobot.core.events import SHUTDOWN, RunEvent, TurnAborted, TurnStarted

if TYPE_CHECKING:
    from picobot.core.channel import ReplyWriter


class TurnJournal(Protocol):
    async def started(self, inbound_id: str) -> None:
        """A turn for `inbound_id` starts: one more attempt, should it never finish."""

    async def finished(self, inbound_id: str) -> None:
        """The turn for `inbound_id` ended; it will not be run again."""

    async def interrupted(self, inbound_id: str) -> None:
        """A graceful shutdown cut the turn: not the turn's fault, so not an attempt."""


class FinishedInOutbox:
    """Wraps a reply writer: when the turn is over, its inbound message is marked finished
    (after the writer delivered what it had), so a restart does not run it again.

    A turn whose reply (any durable message of it) could not be recorded — the writer raised
    `StorageError` — is not finished: like a turn cut by shutdown, the writer is told so (it
    sends nothing more and keeps the placeholder), and the turn runs again. The error goes on
    to the caller (and to a wrapper around this one: cluster mode does not ack the turn).
    """

    def __init__(self, writer: ReplyWriter, inbound_id: str, outbox: TurnJournal) -> None:
        self.writer = writer
        self.inbound_id = inbound_id
        self.outbox = outbox
        self._interrupted = False
        self._unrecorded = False

    async def feed(self, event: RunEvent) -> None:
        if isinstance(event, TurnStarted):
            try:  # (not contextlib.suppress: this and `_journal` run for every message)
                await self.outbox.started(self.inbound_id)
            except StorageError:
                pass  # reported by the outbox's watcher
        # A turn cut by shutdown is not finished: the next start runs it again.
        if isinstance(event, TurnAborted) and event.reason == SHUTDOWN:
            self._interrupted = True
        if self._unrecorded:
            return  # this run's reply is dropped: the turn runs again
        try:
            await self.writer.feed(event)
        except StorageError:
            self._unrecorded = True
            with contextlib.suppress(Exception):  # it failed already; it only has to stop
                await self.writer.feed(TurnAborted(SHUTDOWN))
            raise

    async def finish(self) -> None:
        try:
            await self.writer.finish()  # if this is cut short, the turn is not finished either
        except StorageError:
            self._unrecorded = True
            await self._journal()
            raise
        await self._journal()

    async def _journal(self) -> None:
        if self._unrecorded:
            return  # an attempt that did not finish: runs again (a bounded number of times)
        try:
            if self._interrupted:
                await self.outbox.interrupted(self.inbound_id)
            else:
                await self.outbox.finished(self.inbound_id)
        except StorageError:
            pass  # not recorded: a restart runs it again
