"""Telegram, on python-telegram-bot 22 (a bare `Bot`: no `Application`, no `AIORateLimiter`).

    long polling: TelegramPoller (telegram_polling) ─┐
    webhook: telegram_webhook, secret checked ───────┴─► to_inbound() ─► sink (the core's Intake)
    send / edit / delete / typing ─► Bot API, errors through telegram_errors.translate_errors()
    send_file / download ─► telegram_files

Either way an update is acknowledged to Telegram (the next getUpdates offset, the webhook's 200)
only after the sink recorded it. The core paces and retries outbound calls from
`capabilities.rate`, so PTB gets no rate limiter and no retries of its own. Polling errors are
retried for ever, with a backoff growing to 30 s, and reported as `State.DISCONNECTED`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar

import aiohttp
import httpx
from aiohttp import web
from telegram import Bot, BotCommand, LinkPreviewOptions, Update
from telegram.constants import ChatAction
from telegram.request import HTTPXRequest

from channels import telegram_files
from channels.downloads import stream_url
from channels.telegram_errors import translate_errors
from channels.telegram_params import chat_ref, reply_parameters, thread_ref
from channels.telegram_polling import TelegramPoller
from channels.telegram_updates import BotIdentity, to_inbound
from channels.telegram_webhook import handle_webhook
from picobot.config import TelegramConfig
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
    ServesHttp,
    Services,
    State,
)
from picobot.core.errors import BadRequest, BusClosed, ChannelTimeout
from picobot.core.messages import Attachment

log = logging.getLogger("picobot.telegram")

ALLOWED_UPDATES = ("message",)  # edits, reactions, members...: not asked for, ignored if sent
# Seconds a getUpdates long poll waits for updates. Also how long DISCONNECTED may outlast a
# recovery when nothing arrives: only an answered poll shows that polling works again.
POLL_TIMEOUT = 10.0
# getUpdates' HTTP read timeout is this plus POLL_TIMEOUT (PTB's `Bot.get_updates` adds them):
# the long poll's answer is waited for, and a dead connection still noticed.
POLL_READ_MARGIN = 5.0
# PTB's own builder default is 256; a bare `Bot` has ONE connection, so a hung call would
# block every chat. Each lane and typing indicator holds at most one connection at a time.
CONNECTION_POOL_SIZE = 128
INTAKE_DRAIN_TIMEOUT = 5.0  # seconds stop_intake() waits for fetched updates to reach the sink
COMMANDS = {
    "help": "What I can do",
    "new": "Start a new conversation",
    "stop": "Stop the current answer",
    "status": "Model and conversation status",
}
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

# Telegram: ~1 message/s per chat (short bursts allowed), 20/min per group, 30/s overall.
# Each budget stays under what Telegram (and tests/fakes/telegram_rules.py) allows:
# - per chat, a leaky bucket of 2 at 1/s: at most 2 + t calls in any t seconds; Telegram's
#   bucket holds 3, so one token is left over for network jitter. Edits count here too.
# - per group, 5 at once then 15/min: the 21st call comes at least (21 - 5) / 0.25 = 64 s after
#   the 1st, so no 60 s window holds more than 20 (edits count too, though Telegram's doesn't).
# - overall, Telegram counts ~30 sends per second: a window of 30 calls (sends, edits and
#   deletes together) per second, so a burst to 30 chats goes out at once. Each call counts
#   until a second after its answer came back, so however late it reached Telegram, no
#   second there holds 31. (A leaky bucket of 25/s with a burst of 4 took 1.7x the minimum
#   for 30 chats; see benchmarks/telegram_burst.py.) A 429 holds only its own chat's lane.
RATE_BUDGET = RateBudget(
    overall=Rate.per_window(30, seconds=1.0),
    per_chat=Rate(1.0, burst=2),
    per_group=Rate.per_minute(15, burst=5),
)
CAPABILITIES = Capabilities(
    max_length=4096,
    length_unit="codepoints",  # the limit counts code points; entity offsets are UTF-16
    format="telegram_html",
    measure_visible=True,  # markup does not count towards the limit
    can_edit=True,
    can_delete=True,
    can_type=True,
    typing_interval=4.0,  # the indicator lasts 5 s
    native_streaming=True,  # sendMessageDraft, in private chats
    flush_interval=1.0,
    rate=RATE_BUDGET,
    max_upload=50_000_000,  # sendDocument/sendVoice/sendAudio
    max_image_upload=None,  # sendPhoto takes 10 MB; larger images go as documents
    max_caption=1024,
)


class TelegramChannel(Channel, ServesHttp, FileTransfer, HoldsConnection):
    """The bot on Telegram: private chats, groups (when addressed) and forum topics.

    Resource handling: `start()` opens the PTB `Bot` and starts polling, or sets the webhook
    whose route `http_routes()` gave the daemon. `stop()` stops polling (confirming the updates
    the sink took), then closes the HTTP connections; a webhook stays registered so Telegram
    keeps the updates sent while picobot restarts.
    """

    name: ClassVar[str] = "telegram"
    capabilities = CAPABILITIES
    poll_timeout = POLL_TIMEOUT

    def __init__(
        self, config: TelegramConfig, sink: InboundSink, services: Services = NO_SERVICES
    ) -> None:
        super().__init__(config, sink, services)
        self.config: TelegramConfig = config
        self._bot_or_none: Bot | None = None
        self._poller: TelegramPoller | None = None
        self._identity: BotIdentity | None = None
        self._intake_open = False
        self._files: aiohttp.ClientSession | None = None  # file downloads
        # Photos come in several sizes: the largest within the core's limit is taken.
        self._max_file_bytes = services.files.max_bytes if services.files else None
        self._deferred = False  # cluster mode: polling waits for open_intake() (the lease)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (getMe), register the slash commands, and start polling or the webhook.

        :raises Forbidden: "telegram token rejected" when Telegram does not know the token.
        :raises ChannelError: when Telegram cannot be reached or refuses the setup.
        """
        bot = self._bot_or_none = self._build()
        with translate_errors(start=True):
            await bot.initialize()  # getMe
        self._identity = BotIdentity(bot.id, bot.username, frozenset(COMMANDS))
        await self._set_commands()
        self._intake_open = True  # before setWebhook: Telegram may post at once
        webhook = self.config.webhook
        with translate_errors(start=True):
            if webhook is None and not self._deferred:
                await bot.delete_webhook()  # getUpdates answers 409 while a webhook is set
                self._start_polling()
            elif webhook is not None:
                await bot.set_webhook(
                    webhook.url,
                    secret_token=webhook.secret_token.get_secret_value(),
                    allowed_updates=ALLOWED_UPDATES,
                )
        mode = "polling" if webhook is None else f"webhook at {webhook.path}"
        if webhook is None and self._deferred:
            mode = "sending; polling on the lease holder"
        log.info("telegram: connected as @%s (%s)", bot.username, mode)
        self.set_state(State.CONNECTED, mode)

    def _start_polling(self) -> None:
        self._intake_open = True
        self._poller = TelegramPoller(
            self._bot,
            self._deliver,
            lambda state, detail: self.set_state(state, detail),  # late-bound
            timeout=self.poll_timeout,
            allowed_updates=ALLOWED_UPDATES,
        )
        self._poller.start()

    # -- cluster mode: polling only on the node holding the lease (HoldsConnection) --------

    @property
    def exclusive_intake(self) -> bool:
        return self.config.webhook is None

    def defer_intake(self, poll_timeout: float) -> None:
        self._deferred = True
        self.poll_timeout = min(self.poll_timeout, poll_timeout)

    async def open_intake(self) -> None:
        if self._poller is not None or self._bot_or_none is None:
            return
        with translate_errors():
            await self._bot.delete_webhook()
        self._start_polling()
        self.set_state(State.CONNECTED, "polling")
        log.info("telegram: polling (this node holds the lease)")

    async def close_intake(self, *, finish_poll: bool) -> None:
        self._intake_open = False
        poller, self._poller = self._poller, None
        if poller is not None:
            await poller.stop(INTAKE_DRAIN_TIMEOUT, finish_poll=finish_poll)
            if self.state is State.CONNECTED:
                self.set_state(State.CONNECTED, "sending; polling on the lease holder")

    def _build(self) -> Bot:
        token = self.config.token.get_secret_value() if self.config.token else ""
        # One TLS context (CA store) for both clients: httpx loads one per client, ~1.3 MB each.
        shared = {"verify": httpx.create_ssl_context()}
        return Bot(
            token,
            base_url=self.config.base_url,
            base_file_url=self.config.base_file_url,
            request=HTTPXRequest(connection_pool_size=CONNECTION_POOL_SIZE, httpx_kwargs=shared),
            get_updates_request=HTTPXRequest(read_timeout=POLL_READ_MARGIN, httpx_kwargs=shared),
        )

    async def _set_commands(self) -> None:
        commands = [BotCommand(name, text) for name, text in COMMANDS.items()]
        try:
            with translate_errors():
                await self._bot.set_my_commands(commands)
        except Exception as exc:  # the menu is a nicety; the bot works without it
            log.warning("telegram: could not register the slash commands: %s", exc)

    async def stop_intake(self) -> None:
        """Take no more updates; return once those being handed over have reached the sink.

        Polling stops (the in-flight long poll is cancelled) and confirms to Telegram only what
        the sink took; the webhook answers 503 from now on. Either way Telegram delivers the
        rest again later (to the next run).
        """
        self._intake_open = False
        poller, self._poller = self._poller, None
        if poller is not None:
            await poller.stop(INTAKE_DRAIN_TIMEOUT)

    async def stop(self) -> None:
        # Stop intake first: updates confirmed to Telegram must have reached the sink.
        await self.stop_intake()
        bot, self._bot_or_none = self._bot_or_none, None
        if bot is not None:
            await bot.shutdown()  # closes both connection pools (also after a failed getMe)
        files, self._files = self._files, None
        if files is not None:
            await files.close()

    # -- inbound --------------------------------------------------------------------------

    async def _deliver(self, update: Update) -> None:
        """Hand one update to the sink; a bad update is logged and skipped, never fatal.

        :raises BusClosed: picobot is shutting down and did not take the message: do not ack.
        """
        try:
            assert self._identity is not None
            message = to_inbound(update, self._identity, self._max_file_bytes)
            if message is not None:
                await self.sink(message)
        except BusClosed:
            raise
        except Exception:
            log.exception("telegram: could not handle update %s", update.update_id)

    def http_routes(self) -> Sequence[web.AbstractRouteDef]:
        if self.config.webhook is None:
            return ()
        return [web.post(self.config.webhook.path, self._on_webhook)]

    async def _on_webhook(self, request: web.Request) -> web.Response:
        assert self.config.webhook is not None
        secret = self.config.webhook.secret_token.get_secret_value()
        bot = self._bot_or_none if self._intake_open else None
        return await handle_webhook(request, secret, bot, self._deliver)

    # -- outbound -------------------------------------------------------------------------

    @property
    def _bot(self) -> Bot:
        if self._bot_or_none is None:
            raise ChannelTimeout("telegram channel is not running")
        return self._bot_or_none

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        with translate_errors():
            sent = await self._bot.send_message(
                chat_ref(chat_id),
                message.text,
                parse_mode=message.parse_mode,
                message_thread_id=thread_ref(thread),
                reply_parameters=reply_parameters(reply_to),
                link_preview_options=NO_PREVIEW,
            )
        return str(sent.message_id)

    async def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """getFile, then stream ``<base_file_url><token>/<file_path>`` (never logged: the URL
        holds the token)."""
        path = await telegram_files.file_path(self._bot, attachment)
        if self._files is None:
            self._files = aiohttp.ClientSession()
        async for chunk in stream_url(self._files, path, "telegram"):
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
        return await telegram_files.send_file(
            self._bot, chat_id, path, attachment, caption=caption, reply_to=reply_to, thread=thread
        )

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        with translate_errors():  # "message is not modified" ends here, as success
            await self._bot.edit_message_text(
                message.text,
                chat_id=chat_ref(chat_id),
                message_id=int(message_id),
                parse_mode=message.parse_mode,
                link_preview_options=NO_PREVIEW,
            )

    async def delete(self, chat_id: str, message_id: str) -> None:
        try:
            with translate_errors():
                await self._bot.delete_message(chat_ref(chat_id), int(message_id))
        except BadRequest as exc:
            if "message to delete not found" not in str(exc).lower():
                raise  # gone already is what we wanted

    async def draft(
        self, chat_id: str, draft_id: int, message: Rendered, thread: str | None = None
    ) -> None:
        with translate_errors():
            await self._bot.send_message_draft(
                int(chat_id),  # drafts exist in private chats only: numeric ids
                draft_id,
                message.text,
                message_thread_id=thread_ref(thread),
                parse_mode=message.parse_mode,
            )

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        with translate_errors():
            await self._bot.send_chat_action(
                chat_ref(chat_id), ChatAction.TYPING, message_thread_id=thread_ref(thread)
            )
