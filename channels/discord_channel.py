"""Discord, on discord.py 2.x: DMs and guild channels over the gateway, replies over REST.

    gateway ─► on_message ─► filters (bots, guilds, channels) ─► InboundMessage ─► sink
    core ─► send / edit / delete / typing ─► client.http (partial objects, no cache lookups)

Sessions: a thread is its own Discord channel, so ``chat_id`` is the thread's id and ``thread``
repeats it. Edits and deletes only get ``chat_id``, and Discord's rate-limit buckets are per
channel, so the core's per-chat lanes and budgets then match Discord's.

Reconnects and RESUMEs are discord.py's. Two things it does not survive, and we do:

- a dispatch its parser chokes on (a missing field raises ``KeyError``) ends ``connect()``:
  every parser is wrapped to log and drop such a dispatch (`_guard_parsers`);
- anything else escaping ``connect()`` (a non-JSON frame raises ``ValueError``): `_run` logs it,
  closes the socket and connects again (a new session) after a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from channels.downloads import kind_of, stream_url
from picobot.config import DiscordConfig
from picobot.core.channel import (
    NO_SERVICES,
    Capabilities,
    Channel,
    FileTransfer,
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
    Forbidden,
    MessageTooLong,
    RateLimited,
)
from picobot.core.messages import Attachment, InboundMessage, Sender

with warnings.catch_warnings():
    # discord.py imports the deprecated `audioop` (voice support, unused here).
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

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
DEFAULT_RETRY_AFTER = 10.0  # a 429 without `Via` (Cloudflare) carries no usable body
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
TOKEN_REJECTED = "discord token rejected"
NO_CONTENT_INTENT = (
    "the Message Content intent is not enabled for this bot "
    "(Discord developer portal → Bot → Privileged Gateway Intents)"
)


class DiscordChannel(Channel, FileTransfer):
    """The Discord adapter. Timings are class attributes so tests can shorten them."""

    name = "discord"
    capabilities = CAPABILITIES

    ready_timeout = 30.0  # start() waits this long for READY, then reports and keeps trying
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
        self._client: _Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # set by the first READY, or when _run gives up
        self._files: aiohttp.ClientSession | None = None  # CDN downloads

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in and connect in a background task; wait up to `ready_timeout` for READY.

        :raises ConfigError: the token was rejected, or the Message Content intent is off.
        :raises ChannelTimeout: not ready in time (the task keeps trying; the state follows).
        """
        self._task = asyncio.create_task(self._run(), name="discord gateway")
        waiter = asyncio.create_task(self._ready.wait())
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
        if not self._ready.is_set():
            raise ChannelTimeout(f"discord not ready after {self.ready_timeout:g} s; still trying")

    async def stop(self) -> None:
        """Close the client and end the background task. Safe after a failed start."""
        client, task = self._client, self._task
        self._task = None
        files, self._files = self._files, None
        if files is not None:
            await files.close()
        if client is not None:
            await client.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _new_client(self) -> _Client:
        intents = discord.Intents.default()
        intents.message_content = True
        return _Client(
            self,
            intents=intents,
            max_ratelimit_timeout=MAX_RATELIMIT_TIMEOUT,
            guild_ready_timeout=self.guild_ready_timeout,
            allowed_mentions=NO_MENTIONS,
        )

    async def _run(self) -> None:
        """Log in, then keep `connect()` running until the client is closed."""
        loop = asyncio.get_running_loop()
        delay = self.reconnect_delay
        token = self.config.token.get_secret_value() if self.config.token else ""
        logged_in = False
        while True:
            client = self._client = self._client or self._new_client()
            started = loop.time()
            try:
                if not logged_in:
                    await client.login(token)
                    logged_in = True
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
                log.error(
                    "discord connection failed (%r); reconnecting in %.1f s",
                    exc,
                    delay,
                    exc_info=True,
                )
                self.set_state(State.DISCONNECTED, f"reconnecting after {type(exc).__name__}")
                if not logged_in:  # login opens an HTTP session: start over with a new client
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
        self._ready.set()

    def _on_ready(self) -> None:
        self.set_state(State.CONNECTED)
        self._ready.set()

    # -- inbound ----------------------------------------------------------------------------

    async def _on_message(self, message: discord.Message) -> None:
        inbound = self._to_inbound(message)
        if inbound is None:
            return
        try:
            await self.sink(inbound)
        except BusClosed:
            log.info("discord: shutting down, dropped message %s", inbound.id)
        except Exception:
            log.exception("discord: the core failed to take message %s", inbound.id)

    def _to_inbound(self, message: discord.Message) -> InboundMessage | None:
        """The message for the core, or None when it is not for us (bots, filters, system)."""
        client = self._client
        me = client.user if client is not None else None
        author = message.author
        if me is None or author.bot or author.id == me.id or message.webhook_id is not None:
            return None
        if message.type not in ANSWERED_TYPES:
            return None
        channel, guild = message.channel, message.guild
        thread = channel if isinstance(channel, discord.Thread) else None
        if guild is not None:
            allowed_guilds, allowed_channels = self.config.allow_guilds, self.config.allow_channels
            if allowed_guilds and str(guild.id) not in allowed_guilds:
                return None
            ids = {str(channel.id)} | ({str(thread.parent_id)} if thread else set())
            if allowed_channels and not ids & set(allowed_channels):
                return None
        role = guild.self_role if guild is not None else None
        mentions = [rf"<@!?{me.id}>"]
        if role is not None:
            mentions.append(rf"<@&{role.id}>")
        resolved = message.reference.resolved if message.reference else None
        mentioned = (
            any(user.id == me.id for user in message.mentions)
            or (role is not None and role.id in message.raw_role_mentions)
            or (isinstance(resolved, discord.Message) and resolved.author.id == me.id)
        )
        text = re.sub("|".join(mentions), "", message.content).strip()
        files = tuple(_attachment(a) for a in message.attachments)
        if not text and not files:
            return None  # nothing to answer (a bare mention)
        return InboundMessage(
            channel=self.name,
            chat_id=str(channel.id),
            sender=Sender(str(author.id), author.name, author.display_name),
            text=text,
            id=f"discord:{message.id}",
            message_id=str(message.id),
            thread=str(thread.id) if thread else None,
            is_group=guild is not None,
            mentioned=mentioned,
            metadata={"guild_id": str(guild.id)} if guild is not None else {},
            attachments=files,
        )

    # -- outbound ---------------------------------------------------------------------------

    def _messageable(self, chat_id: str) -> discord.PartialMessageable:
        if self._client is None or self._client.is_closed():
            raise ChannelTimeout("discord is not connected")
        return self._client.get_partial_messageable(_snowflake(chat_id, ChatNotFound))

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        target = self._messageable(thread or chat_id)
        reference = None
        if reply_to is not None:
            # fail_if_not_exists=False: if the question was deleted, answer without the quote.
            reference = discord.MessageReference(
                message_id=_snowflake(reply_to, BadRequest),
                channel_id=target.id,
                fail_if_not_exists=False,
            )
        with _translate_errors():
            if reference is None:
                sent = await target.send(message.text, allowed_mentions=NO_MENTIONS)
            else:
                sent = await target.send(
                    message.text, allowed_mentions=NO_MENTIONS, reference=reference
                )
        return str(sent.id)

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        target = self._messageable(chat_id).get_partial_message(_snowflake(message_id, BadRequest))
        with _translate_errors():
            await target.edit(content=message.text, allowed_mentions=NO_MENTIONS)

    async def delete(self, chat_id: str, message_id: str) -> None:
        target = self._messageable(chat_id).get_partial_message(_snowflake(message_id, BadRequest))
        with _translate_errors():
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
        target = self._messageable(thread or chat_id)
        reference = None
        if reply_to is not None:
            reference = discord.MessageReference(
                message_id=_snowflake(reply_to, BadRequest),
                channel_id=target.id,
                fail_if_not_exists=False,
            )
        upload = discord.File(str(path), filename=attachment.name or f"{attachment.kind}.bin")
        content = caption.text if caption else None
        try:
            with _translate_errors():
                if reference is None:  # discord.py's stubs take no None here
                    sent = await target.send(content, file=upload, allowed_mentions=NO_MENTIONS)
                else:
                    sent = await target.send(
                        content, file=upload, allowed_mentions=NO_MENTIONS, reference=reference
                    )
        finally:
            upload.close()
        return str(sent.id)

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        target = self._messageable(thread or chat_id)
        with _translate_errors():
            await target.typing()  # awaited (not entered): one request, no refresh task


def _attachment(item: discord.Attachment) -> Attachment:
    mime = (item.content_type or "").partition(";")[0]
    return Attachment(
        kind_of(mime, voice=item.is_voice_message()),
        name=item.filename,
        mime=mime,
        size=item.size,
        source=item.url,
        width=item.width,
        height=item.height,
    )


class _Client(discord.Client):
    """discord.Client whose events go to the adapter."""

    def __init__(self, owner: DiscordChannel, **options: Any) -> None:
        super().__init__(**options)
        self._owner = owner
        _guard_parsers(self)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:  # Discord allows one IDENTIFY per 5 s
            await asyncio.sleep(self._owner.identify_delay)

    async def on_ready(self) -> None:
        log.info("discord connected as %s", self.user)
        self._owner._on_ready()

    async def on_resumed(self) -> None:
        self._owner.set_state(State.CONNECTED)

    async def on_disconnect(self) -> None:
        if not self.is_closed():
            self._owner.set_state(State.DISCONNECTED, "gateway connection lost; reconnecting")

    async def on_message(self, message: discord.Message) -> None:
        await self._owner._on_message(message)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord: error in %s", event_method)


def _snowflake(value: str, error: type[ChannelError]) -> int:
    try:
        return int(value)
    except ValueError:
        raise error(f"discord: {value!r} is not a Discord id") from None


def _guard_parsers(client: discord.Client) -> None:
    """Make every gateway parser log and drop a dispatch it cannot parse.

    discord.py calls `client._connection.parsers[event](data)` outside any try: a KeyError from
    a malformed dispatch would end `connect()` and the session with it. Private, hence the
    getattr: without it, `_run`'s reconnect still recovers (with a new session).
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


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """Turn discord.py and network exceptions into `picobot.core.errors`, once, at the edge."""
    try:
        yield
    except discord.RateLimited as exc:  # a wait over max_ratelimit_timeout
        raise RateLimited(exc.retry_after) from exc
    except discord.HTTPException as exc:
        raise _from_http(exc) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ChannelTimeout(f"discord: {exc!r}") from exc


def _from_http(exc: discord.HTTPException) -> ChannelError:
    status, code, text = exc.status, exc.code, f"discord: {exc}"
    if status == 429:
        retry_after = exc.response.headers.get("Retry-After") if exc.response else None
        try:
            return RateLimited(float(retry_after or DEFAULT_RETRY_AFTER), text)
        except ValueError:
            return RateLimited(DEFAULT_RETRY_AFTER, text)
    if status >= 500:
        return ChannelTimeout(text)
    if status == 403:
        return Forbidden(text)
    if status == 404 and code == 10003:
        return ChatNotFound(text)
    if code == 50035 and "In content:" in exc.text and "length" in exc.text:
        return MessageTooLong(text)
    return BadRequest(text)
