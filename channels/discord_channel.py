"""Discord, on discord.py 2.x: DMs and guild channels over the gateway, replies over REST.

    gateway ─► on_message ─► filters (bots, guilds, channels) ─► InboundMessage ─► sink
    core ─► send / edit / delete / typing ─► client.http (partial objects, no cache lookups)

Sessions: a thread is its own Discord channel, so ``chat_id`` is the thread's id and ``thread``
repeats it. Edits and deletes only get ``chat_id``, and Discord's rate-limit buckets are per
channel, so the core's per-chat lanes and budgets then match Discord's.

Reconnects and RESUMEs are discord.py's. Two things it does not survive, and we do:

- a dispatch its parser chokes on (a missing field raises ``KeyError``) ends ``connect()``:
  every parser is wrapped to log and drop such a dispatch (`discord_gateway.guard_parsers`);
- anything else escaping ``connect()`` (a non-JSON frame raises ``ValueError``): `_run` logs it,
  closes the socket and connects again (a new session) after a growing delay.

One connect loop per channel (`_run`), started once by `start()`, which waits only for its first
outcome: an unreachable Discord leaves the channel DISCONNECTED, still trying, and delays
nothing else. Each failed attempt is one log line, its traceback at debug level (discord.py's
own "Attempting a reconnect" tracebacks included, see `discord_gateway`).

Cluster mode (`HoldsConnection`): one gateway session per bot, on the node holding the lease.
Every node logs in over HTTP (`start()`: REST only, which is all sending needs);
`open_intake()` connects the gateway, `close_intake()` closes it (code 1000: the session ends)
and keeps the HTTP client. A hand-over first lets the messages already received reach the sink.

Retried sends reuse the failed attempt's `nonce` (`discord_nonces`): discord.py always sets
``enforce_nonce``, so when the connection dropped after Discord created the message, the retry
gets that message back instead of posting a second one (an orphan "Thinking…" otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from channels.discord_errors import snowflake, translate_errors
from channels.discord_gateway import GatewayClient, describe, install_reconnect_filter
from channels.discord_messages import to_inbound
from channels.discord_nonces import RetryNonces
from channels.discord_sdk import discord
from channels.downloads import stream_url
from channels.inflight import InFlight
from picobot.config import DiscordConfig
from picobot.core.channel import (
    NO_SERVICES,
    Capabilities,
    Channel,
    FileTransfer,
    HoldsConnection,
    InboundSink,
    Rate,
    RateBudget,
    Rendered,
    Services,
    State,
)
from picobot.core.errors import (
    BadRequest,
    BusClosed,
    ChannelError,
    ChannelTimeout,
    ChatNotFound,
    ConfigError,
)
from picobot.core.messages import Attachment
from picobot.core.tasks import cancel_and_wait

log = logging.getLogger("picobot.discord")

CAPABILITIES = Capabilities(
    max_length=2000,
    length_unit="utf16",  # Discord counts characters; UTF-16 units are never fewer
    format="discord",
    can_edit=True,
    can_delete=True,
    can_type=True,
    typing_interval=8.0,  # the indicator lasts ~10 s
    flush_interval=1.2,
    max_upload=10 * 1024 * 1024,  # 10 MiB on an unboosted server (boosts allow more)
    max_caption=2000,  # the message content sent with the file
    rate=RateBudget(
        overall=Rate(50.0, burst=50),  # Discord's global 50 requests/s
        per_chat=Rate(1.0, burst=3),  # message_create bucket: 5 per 5 s per channel
        edits_per_chat=Rate(1.0, burst=5),  # message_edit bucket: 5 per 5 s per channel
    ),
)

# Nobody is pinged by what the model writes; replies quote without notifying either.
NO_MENTIONS = discord.AllowedMentions(everyone=False, roles=False, users=False, replied_user=False)

MAX_RATELIMIT_TIMEOUT = 30.0  # discord.py's minimum: longer waits raise RateLimited to our lanes
TOKEN_REJECTED = "discord token rejected"
NO_CONTENT_INTENT = (
    "the Message Content intent is not enabled for this bot "
    "(Discord developer portal → Bot → Privileged Gateway Intents)"
)
STANDBY = "sending; gateway on the lease holder"
INTAKE_DRAIN_TIMEOUT = 5.0  # seconds a hand-over waits for received messages to reach the sink


class DiscordChannel(Channel, FileTransfer, HoldsConnection):
    """The Discord adapter. Timings are class attributes so tests can shorten them."""

    name = "discord"
    capabilities = CAPABILITIES

    ready_timeout = 30.0  # start() waits at most this long for a first outcome (READY or not)
    guild_ready_timeout = 2.0  # discord.py waits this long for GUILD_CREATEs before on_ready
    identify_delay = 5.0  # before a re-IDENTIFY (discord.py's default)
    reconnect_delay = 5.0  # after connect() crashed; >= 5 s: one IDENTIFY per 5 s is allowed
    reconnect_max = 60.0  # the delay doubles per crash up to this
    stable_after = 60.0  # a connection up this long resets the crash delay

    def __init__(
        self,
        config: DiscordConfig,
        sink: InboundSink,
        services: Services = NO_SERVICES,
        **timings: float,
    ) -> None:
        super().__init__(config, sink, services)
        for key, value in timings.items():
            if not hasattr(type(self), key):
                raise TypeError(f"unknown option {key!r}")
            setattr(self, key, value)
        self._client: GatewayClient | None = None
        self._logged_in = False  # the client's HTTP half is ready: sending works
        self._task: asyncio.Task[None] | None = None
        self._gateway = True  # cluster mode: False while another node holds the gateway
        self._inflight = InFlight()
        # Set by READY, a failed attempt or giving up: what start() waits for.
        self._settled = asyncio.Event()
        self._nonces = RetryNonces()
        install_reconnect_filter()
        self._files: aiohttp.ClientSession | None = None  # CDN downloads

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connect loop (unless it runs already) and wait up to `ready_timeout` for
        its first outcome. Discord unreachable is no error here: the state says DISCONNECTED
        and the loop keeps trying on its own (so nobody starts a second one). With intake
        deferred (cluster mode) the loop only logs in: sending works, the gateway waits.

        :raises ConfigError: the token was rejected, or the Message Content intent is off.
        """
        if self._task is None or self._task.done():
            self._settled.clear()
            self._task = asyncio.create_task(self._run(), name="discord gateway")
        waiter = asyncio.create_task(self._settled.wait())
        try:
            await asyncio.wait(
                {self._task, waiter},
                timeout=self.ready_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if self.state is State.FAILED:
            raise ConfigError("channels.discord", self.state_detail)
        if not self.connected and self.state is not State.DISCONNECTED:
            self.set_state(State.DISCONNECTED, f"not ready after {self.ready_timeout:g} s")

    async def stop(self) -> None:
        """End the background task, then close the client. Safe after a failed start."""
        client, task = self._client, self._task
        self._client, self._task, self._logged_in = None, None, False
        # The task first: a connect() that saw the client close would dispatch "disconnect"
        # after close() unset the client's loop, leaking that event's coroutine.
        if task is not None:
            await cancel_and_wait(task)
        files, self._files = self._files, None
        if files is not None:
            await files.close()
        if client is not None:
            await client.close()

    # -- cluster mode: the gateway only on the node holding the lease (HoldsConnection) -----

    @property
    def exclusive_intake(self) -> bool:
        return True  # the gateway is the only intake

    def defer_intake(self, poll_timeout: float) -> None:
        self._gateway = False  # no long poll here: a gateway session closes at once

    async def open_intake(self) -> None:
        """Connect the gateway (a new session: IDENTIFY).

        :raises ChannelTimeout: the client is not logged in (start() has not succeeded).
        """
        if self._gateway and self._task is not None and not self._task.done():
            return
        if self._client is None or not self._logged_in:
            raise ChannelTimeout("discord is not logged in")
        self._gateway = True
        self._task = asyncio.create_task(self._run(), name="discord gateway")
        log.info("discord: connecting the gateway (this node holds the lease)")

    async def close_intake(self, *, finish_poll: bool) -> None:
        """Close the gateway session; sending goes on over HTTP. `finish_poll`: then wait for
        the messages already received to reach the sink (a hand-over)."""
        self._gateway = False
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        client = self._client
        if client is not None and client.ws is not None:
            with contextlib.suppress(Exception):  # gone already: nothing left to close
                await client.ws.close(code=1000)
        if finish_poll and not await self._inflight.finished(INTAKE_DRAIN_TIMEOUT):
            log.warning("discord: some received messages were not handed over")
        if self._client is not None and self.state is not State.FAILED:
            self.set_state(State.CONNECTED, STANDBY)

    def _new_client(self) -> GatewayClient:
        intents = discord.Intents.default()
        intents.message_content = True
        return GatewayClient(
            self,
            intents=intents,
            max_ratelimit_timeout=MAX_RATELIMIT_TIMEOUT,
            guild_ready_timeout=self.guild_ready_timeout,
            allowed_mentions=NO_MENTIONS,
        )

    async def _run(self) -> None:
        """Log in, then keep `connect()` running until the client is closed (or, while another
        node holds the gateway, stop once logged in)."""
        loop = asyncio.get_running_loop()
        delay = self.reconnect_delay
        token = self.config.token.get_secret_value() if self.config.token else ""
        while True:
            client = self._client = self._client or self._new_client()
            started = loop.time()
            try:
                if not self._logged_in:
                    await client.login(token)
                    self._logged_in = True
                if not self._gateway:
                    log.info("discord: logged in as %s (%s)", client.user, STANDBY)
                    self.set_state(State.CONNECTED, STANDBY)
                    self._settled.set()
                    return
                await client.connect(reconnect=True)
                return  # close() was called
            except discord.LoginFailure:
                return self._give_up(TOKEN_REJECTED)
            except discord.PrivilegedIntentsRequired:
                return self._give_up(NO_CONTENT_INTENT)
            except discord.ConnectionClosed as exc:  # a close code discord.py will not resume
                if self._task is None:  # stopping
                    return
                return self._give_up(
                    TOKEN_REJECTED if exc.code == 4004 else f"gateway closed ({exc.code})"
                )
            except Exception as exc:
                if self._task is None:  # stopping
                    return
                if loop.time() - started > self.stable_after:
                    delay = self.reconnect_delay
                log.warning(
                    "discord connection failed (%s); reconnecting in %.1f s", describe(exc), delay
                )
                log.debug("discord connection failure", exc_info=True)
                self.set_state(State.DISCONNECTED, f"reconnecting after {type(exc).__name__}")
                self._settled.set()
                if not self._logged_in:  # login opens an HTTP session: start over
                    self._client = None
                    await client.close()
                elif client.ws is not None:
                    with contextlib.suppress(Exception):  # a broken socket: replaced anyway
                        await client.ws.close(code=4000)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max)

    def _give_up(self, reason: str) -> None:
        log.error("discord: %s", reason)
        self.set_state(State.FAILED, reason)
        self._settled.set()

    # -- gateway events (GatewayOwner) -------------------------------------------------------

    def gateway_ready(self) -> None:
        if self._gateway:  # not a READY delayed past close_intake()
            self.set_state(State.CONNECTED)
        self._settled.set()

    def gateway_resumed(self) -> None:
        self.set_state(State.CONNECTED)

    def gateway_lost(self) -> None:
        self.set_state(State.DISCONNECTED, "gateway connection lost; reconnecting")
        self._settled.set()  # a first connect that failed: start() need not wait

    # -- inbound ----------------------------------------------------------------------------

    async def gateway_message(self, message: discord.Message) -> None:
        client = self._client
        inbound = to_inbound(message, client.user if client is not None else None, self.config)
        if inbound is None:
            return
        with self._inflight.track():
            try:
                await self.sink(inbound)
            except BusClosed as exc:
                log.info("discord: dropped message %s (%s)", inbound.id, exc)
            except Exception:
                log.exception("discord: the core failed to take message %s", inbound.id)

    # -- outbound ---------------------------------------------------------------------------

    def _messageable(self, chat_id: str) -> discord.PartialMessageable:
        if self._client is None or self._client.is_closed():
            raise ChannelTimeout("discord is not connected")
        return self._client.get_partial_messageable(snowflake(chat_id, ChatNotFound))

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        return await self._create(thread or chat_id, message.text, reply_to, message.text)

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        target = self._messageable(chat_id).get_partial_message(snowflake(message_id, BadRequest))
        with translate_errors():
            await target.edit(content=message.text, allowed_mentions=NO_MENTIONS)

    async def delete(self, chat_id: str, message_id: str) -> None:
        target = self._messageable(chat_id).get_partial_message(snowflake(message_id, BadRequest))
        with translate_errors():
            await target.delete()

    async def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """The attachment from Discord's CDN (a signed URL: no token is sent)."""
        if self._files is None:
            self._files = aiohttp.ClientSession()
        async for chunk in stream_url(self._files, attachment.source or "", "discord"):
            yield chunk

    async def send_file(
        self,
        chat_id: str,
        path: Path,
        attachment: Attachment,
        *,
        caption: Rendered | None = None,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        content = caption.text if caption else None
        return await self._create(
            thread or chat_id,
            content,
            reply_to,
            f"\0file {path}\0{content or ''}",
            upload=(path, attachment.name or f"{attachment.kind}.bin"),
        )

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        target = self._messageable(thread or chat_id)
        with translate_errors():
            await target.typing()  # awaited (not entered): one request, no refresh task

    async def _create(
        self,
        chat_id: str,
        content: str | None,
        reply_to: str | None,
        key_text: str,
        upload: tuple[Path, str] | None = None,
    ) -> str:
        """Post a message (with the file `upload`: path, name), quoting `reply_to`.

        A failed attempt's nonce is kept under (channel, reply_to, `key_text`) for its retry.
        """
        target = self._messageable(chat_id)
        options: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if reply_to is not None:
            # fail_if_not_exists=False: if the question was deleted, answer without the quote.
            options["reference"] = discord.MessageReference(
                message_id=snowflake(reply_to, BadRequest),
                channel_id=target.id,
                fail_if_not_exists=False,
            )
        file = discord.File(str(upload[0]), filename=upload[1]) if upload else None
        if file is not None:
            options["file"] = file
        key = (target.id, reply_to, key_text)
        nonce, first_try = self._nonces.take(key)
        try:
            with translate_errors():
                sent = await target.send(content, nonce=nonce, **options)
        except ChannelError:
            self._nonces.keep(key, nonce, first_try)  # for the core's retry of this message
            raise
        finally:
            if file is not None:
                file.close()
        return str(sent.id)
