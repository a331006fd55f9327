"""Telegram long polling that confirms an update only after it was handed over.

    getUpdates(offset) ─► updates ─► handle(update), per chat in order, chats at once
                                   ─► offset = last update_id + 1
                                   └─ BusClosed: stop; the first refused update stays unconfirmed

Telegram forgets every update below ``offset`` when a getUpdates with that offset reaches it, so
the poll after an update was handled is its ack. PTB's `Updater` sends that poll as soon as it
fetched, before the handler ran: a crash in between loses the updates. Here, an update is
confirmed only once `handle` returned; after a crash Telegram delivers it again, and the core's
outbox recognises the replay by its id (``telegram:<update_id>``).

Errors: `InvalidToken` ends polling with `State.FAILED`; any other failure (409 Conflict when
another instance polls, network errors) sets `State.DISCONNECTED` and is retried with a backoff
of 1 s growing by 1.5 up to 30 s; the next answered poll sets `State.CONNECTED` again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram import error as tg

from picobot.core.channel import State
from picobot.core.errors import BusClosed

log = logging.getLogger("picobot.telegram")

BACKOFF_FIRST, BACKOFF_FACTOR, BACKOFF_MAX = 1.0, 1.5, 30.0  # seconds, as PTB's Updater
CONFIRM_TIMEOUT = 2.0  # seconds the courtesy confirmation at stop() may take


class TelegramPoller:
    """Polls `bot` and hands each update to `handle`: each chat's in order, chats at once.

    Resource handling: `start()` starts one task; `stop()` ends it (an in-flight long poll is
    cancelled; a batch being handed over is finished first, within `drain_timeout`), then
    confirms what was handled. The bot's connections belong to the caller.

    Error handling: `handle` raising `BusClosed` stops polling without confirming that update;
    any other exception from `handle` is logged and the update skipped (a poison update must
    not block the chat). Polling errors go to `report(state, detail)`, never raised.
    """

    def __init__(
        self,
        bot: Bot,
        handle: Callable[[Update], Awaitable[None]],
        report: Callable[[State, str], None],
        *,
        timeout: float,
        allowed_updates: Sequence[str],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bot, self._handle, self._report = bot, handle, report
        self._timeout = dt.timedelta(seconds=timeout)
        self._allowed = list(allowed_updates)
        self._sleep = sleep
        self._offset: int | None = None  # next update_id to ask for: all below were handled
        self._confirmed: int | None = None  # offset of the last poll Telegram answered
        self._trouble: str | None = None  # what went wrong, while polling fails
        self._handing_over = False
        self._in_poll = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telegram-polling")

    async def stop(self, drain_timeout: float, *, finish_poll: bool = False) -> None:
        """Stop polling; return once the updates being handed over have reached `handle`.

        `finish_poll`: let a long poll in flight return (within its timeout plus
        `drain_timeout`) instead of cancelling it, so no other poller overlaps it.
        """
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        limit = drain_timeout
        if finish_poll and self._in_poll:
            limit += self._timeout.total_seconds()
        elif not self._handing_over:
            task.cancel()  # a long poll or a backoff sleep: nothing is lost by cancelling
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            log.warning("telegram: some fetched updates were not handed over")
            task.cancel()
            await asyncio.wait({task})
        await self._confirm()

    async def _confirm(self) -> None:
        # Not needed for safety (replays are recognised), but it spares the next run them.
        if self._offset is None or self._offset == self._confirmed:
            return
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT):
                await self._bot.get_updates(
                    offset=self._offset, timeout=dt.timedelta(0), allowed_updates=self._allowed
                )
        except (tg.TelegramError, TimeoutError) as exc:
            log.info("telegram: could not confirm handled updates (sent again next run): %s", exc)

    async def _run(self) -> None:
        try:
            await self._poll_loop()
        except tg.InvalidToken:
            log.error("telegram token rejected while polling; polling stopped")
            self._report(State.FAILED, "telegram token rejected")
        except BusClosed:
            log.info("telegram: shutting down; update %s is left for the next run", self._offset)
        except Exception as exc:  # a bug: say so, never die silently
            log.exception("telegram: polling stopped")
            self._report(State.FAILED, f"polling stopped: {exc!r}")

    async def _poll_loop(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stopping:
            self._in_poll = True
            try:
                updates = await self._bot.get_updates(
                    offset=self._offset, timeout=self._timeout, allowed_updates=self._allowed
                )
            except tg.InvalidToken:
                raise
            except Exception as exc:
                self._in_poll = False
                self._failed(exc)
                await self._sleep(delay)
                delay = min(delay * BACKOFF_FACTOR, BACKOFF_MAX)
                continue
            self._in_poll = False
            delay = BACKOFF_FIRST
            self._confirmed = self._offset
            if self._trouble is not None:
                log.info("telegram: polling recovered")
                self._trouble = None
                self._report(State.CONNECTED, "polling")
            self._handing_over = True
            try:
                await self._hand_over(updates)
            finally:
                self._handing_over = False

    async def _hand_over(self, updates: Sequence[Update]) -> None:
        """Each chat's updates in order, the chats of the batch at once: one chat's slow
        download does not hold up another, and the intake records the batch in one commit.

        :raises BusClosed: if an update was refused; the offset stays at the first one not
            taken (those of other chats after it come again, and are recognised as replays).
        """
        chats: dict[int | None, list[Update]] = {}
        for update in updates:
            chat = update.effective_chat
            chats.setdefault(chat.id if chat is not None else None, []).append(update)
        refused = await asyncio.gather(*(self._hand_over_chat(chat) for chat in chats.values()))
        first = min((update.update_id for update in refused if update is not None), default=None)
        if first is not None:
            self._offset = first
            raise BusClosed(f"update {first} refused: shutting down")
        if updates:
            self._offset = updates[-1].update_id + 1

    async def _hand_over_chat(self, updates: list[Update]) -> Update | None:
        """One chat's updates, in order; the first one refused (`BusClosed`), if any."""
        for update in updates:
            try:
                await self._handle(update)
            except BusClosed:
                return update  # not taken: Telegram delivers it again
            except Exception:
                log.exception("telegram: could not handle update %s; skipped", update.update_id)
        return None

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, tg.Conflict):
            detail = f"409 Conflict: is another instance polling with this token? ({exc})"
        else:
            detail = f"polling failed: {exc}"
        # One error per run of failures; the retries that follow are debug noise.
        level = logging.ERROR if self._trouble is None else logging.DEBUG
        log.log(level, "telegram: %s; retrying", detail)
        self._trouble = detail
        self._report(State.DISCONNECTED, detail)
