"""The gateway client: its events go to the adapter, and what discord.py does not survive.

A dispatch its parser chokes on would end ``connect()``: every parser is wrapped to log and drop
it (`guard_parsers`). discord.py's own reconnect tracebacks become one warning line
(`install_reconnect_filter`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from channels.discord_sdk import discord

log = logging.getLogger("picobot.discord")

DISCORD_RECONNECT = "Attempting a reconnect in %.2fs"  # discord.client's message, verbatim


class GatewayOwner(Protocol):
    """What the client reports to (the adapter)."""

    identify_delay: float  # before a re-IDENTIFY

    def gateway_ready(self) -> None: ...

    def gateway_resumed(self) -> None: ...

    def gateway_lost(self) -> None: ...

    async def gateway_message(self, message: discord.Message) -> None: ...


class GatewayClient(discord.Client):
    """discord.Client whose events go to the adapter."""

    def __init__(self, owner: GatewayOwner, **options: Any) -> None:
        super().__init__(**options)
        self._owner = owner
        guard_parsers(self)

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        # close() unsets the client's loop: an event dispatched after it (READY's delay running
        # out, connect() seeing the socket close) raised AttributeError and left its handler's
        # coroutine never awaited. Nothing listens any more: drop it.
        if not self.is_closed():
            super().dispatch(event, *args, **kwargs)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:  # Discord allows one IDENTIFY per 5 s
            await asyncio.sleep(self._owner.identify_delay)

    async def on_ready(self) -> None:
        log.info("discord connected as %s", self.user)
        self._owner.gateway_ready()

    async def on_resumed(self) -> None:
        self._owner.gateway_resumed()

    async def on_disconnect(self) -> None:
        if not self.is_closed():
            self._owner.gateway_lost()

    async def on_message(self, message: discord.Message) -> None:
        await self._owner.gateway_message(message)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord: error in %s", event_method)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _OneLineReconnects(logging.Filter):
    """discord.py logs each of its own reconnects with a traceback at ERROR level: make that
    one WARNING line naming the error, and log the traceback at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != DISCORD_RECONNECT or not record.exc_info or not record.args:
            return True
        exc = record.exc_info[1]
        log.debug("discord gateway failure", exc_info=record.exc_info)
        record.msg = "discord gateway connection failed (%s); reconnecting in %.1f s"
        record.args = (describe(exc) if exc else "unknown error", *record.args)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_DISCORD_CLIENT_LOG = logging.getLogger("discord.client")
_RECONNECTS = _OneLineReconnects()


def install_reconnect_filter() -> None:
    """Put the one-line filter on discord.client's logger (once)."""
    if _RECONNECTS not in _DISCORD_CLIENT_LOG.filters:
        _DISCORD_CLIENT_LOG.addFilter(_RECONNECTS)


def guard_parsers(client: discord.Client) -> None:
    """Make every gateway parser log and drop a dispatch it cannot parse.

    discord.py calls `client._connection.parsers[event](data)` outside any try: a KeyError from
    a malformed dispatch would end `connect()` and the session with it. Private, hence the
    getattr: without it, the adapter's reconnect still recovers (with a new session).
    """
    parsers = getattr(getattr(client, "_connection", None), "parsers", None)
    if not isinstance(parsers, dict):
        log.warning("discord.py internals changed: malformed dispatches will force a reconnect")
        return
    for event, parse in parsers.items():
        parsers[event] = _guarded(event, parse)


def _guarded(event: str, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(parse)
    def guarded(data: Any) -> Any:
        try:
            return parse(data)
        except Exception as exc:
            log.warning("discord: ignored a malformed %s dispatch (%r)", event, exc)
            return None

    return guarded
