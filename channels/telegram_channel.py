"""Telegram, on python-telegram-bot 22 (a bare `Bot`: no `Application`, no `AIORateLimiter`).

    long polling: TelegramPoller (telegram_polling) ─┐
    webhook: aiohttp route, secret checked ──────────┴─► to_inbound() ─► sink (the core's Intake)
    send / edit / delete / typing ─► Bot API, errors through _translate_errors()

Either way an update is acknowledged to Telegram (the next getUpdates offset, the webhook's 200)
only after the sink recorded it. The core paces and retries outbound calls from
`capabilities.rate`, so PTB gets no rate limiter and no retries of its own. Polling errors are
retried for ever, with a backoff growing to 30 s, and reported as `State.DISCONNECTED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from telegram import Bot, BotCommand, InputFile, LinkPreviewOptions, ReplyParameters, Update
from telegram import error as tg
from telegram.constants import ChatAction
from telegram.request import HTTPXRequest

from channels.downloads import stream_url
from channels.telegram_polling import TelegramPoller
from channels.telegram_updates import BotIdentity, to_inbound
from picobot.config import TelegramConfig
from picobot.core.channel import (
    NO_SERVICES,
    Capabilities,
    Channel,
    FileTransfer,
    InboundSink,
    Rate,
    RateBudget,
    Rendered,
    ServesHttp,
    Services,
    State,
)
from picobot.core.errors import (
    BadRequest,
    BusClosed,
    ChannelTimeout,
    ChatMigrated,
    ChatNotFound,
    Forbidden,
    FormattingRejected,
    MessageTooLong,
    RateLimited,
)
from picobot.core.messages import Attachment, AttachmentKind

log = logging.getLogger("picobot.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
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
# Each budget stays strictly under what Telegram (and tests/fakes/telegram_rules.py) allows:
# - per chat, a leaky bucket of 2 at 1/s: at most 2 + t calls in any t seconds; Telegram's
#   bucket holds 3, so one token is left over for network jitter. Edits count here too.
# - per group, 5 at once then 15/min: the 21st call comes at least (21 - 5) / 0.25 = 64 s after
#   the 1st, so no 60 s window holds more than 20 (edits count too, though Telegram's doesn't).
# - overall, 4 at once then 25/s: at most 29 calls in any second, sends, edits and deletes
#   together, where Telegram counts 30 sends.
RATE_BUDGET = RateBudget(
    overall=Rate(25.0, burst=4),
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
PHOTO_LIMIT = 10_000_000
# sendPhoto refuses very long or wide images (width + height over 10 000, ratio over 20):
# they go as a document instead.
PHOTO_REFUSED = ("PHOTO_INVALID_DIMENSIONS", "IMAGE_PROCESS_FAILED")


class TelegramChannel(Channel, ServesHttp, FileTransfer):
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

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (getMe), register the slash commands, and start polling or the webhook.

        :raises Forbidden: "telegram token rejected" when Telegram does not know the token.
        :raises ChannelError: when Telegram cannot be reached or refuses the setup.
        """
        bot = self._bot_or_none = self._build()
        with _translate_errors(start=True):
            await bot.initialize()  # getMe
        self._identity = BotIdentity(bot.id, bot.username, frozenset(COMMANDS))
        await self._set_commands()
        self._intake_open = True  # before setWebhook: Telegram may post at once
        webhook = self.config.webhook
        with _translate_errors(start=True):
            if webhook is None:
                await bot.delete_webhook()  # getUpdates answers 409 while a webhook is set
                self._poller = TelegramPoller(
                    bot,
                    self._deliver,
                    lambda state, detail: self.set_state(state, detail),  # late-bound
                    timeout=self.poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                )
                self._poller.start()
            else:
                await bot.set_webhook(
                    webhook.url,
                    secret_token=webhook.secret_token.get_secret_value(),
                    allowed_updates=ALLOWED_UPDATES,
                )
        mode = "polling" if webhook is None else f"webhook at {webhook.path}"
        log.info("telegram: connected as @%s (%s)", bot.username, mode)
        self.set_state(State.CONNECTED, mode)

    def _build(self) -> Bot:
        token = self.config.token.get_secret_value() if self.config.token else ""
        return Bot(
            token,
            base_url=self.config.base_url,
            base_file_url=self.config.base_file_url,
            request=HTTPXRequest(connection_pool_size=CONNECTION_POOL_SIZE),
            get_updates_request=HTTPXRequest(read_timeout=POLL_READ_MARGIN),
        )

    async def _set_commands(self) -> None:
        commands = [BotCommand(name, text) for name, text in COMMANDS.items()]
        try:
            with _translate_errors():
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
        expected = self.config.webhook.secret_token.get_secret_value().encode()
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            log.warning("telegram: webhook call with a wrong or missing secret token")
            return web.Response(status=403)
        bot = self._bot_or_none
        if bot is None or not self._intake_open:
            return web.Response(status=503)  # Telegram delivers it again later
        try:
            update = Update.de_json(await request.json(), bot)
        except Exception as exc:
            log.warning("telegram: unreadable webhook update: %s", exc)
            return web.Response(status=400)
        try:
            await self._deliver(update)  # answered only once the sink has it: our ack
        except BusClosed:
            return web.Response(status=503)
        return web.Response()

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
        reply = (
            ReplyParameters(int(reply_to), allow_sending_without_reply=True) if reply_to else None
        )
        with _translate_errors():
            sent = await self._bot.send_message(
                _chat(chat_id),
                message.text,
                parse_mode=message.parse_mode,
                message_thread_id=_thread(thread),
                reply_parameters=reply,
                link_preview_options=NO_PREVIEW,
            )
        return str(sent.message_id)

    async def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """getFile, then stream ``<base_file_url><token>/<file_path>`` (never logged: the URL
        holds the token)."""
        with _translate_errors():
            file = await self._bot.get_file(attachment.source or "")
        if not file.file_path:
            raise BadRequest("telegram: the file has no download path")
        if self._files is None:
            self._files = aiohttp.ClientSession()
        async for chunk in stream_url(self._files, file.file_path, "telegram"):
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
        data = await asyncio.to_thread(path.read_bytes)
        upload = InputFile(data, filename=attachment.name or None)
        common: dict[str, Any] = {
            "chat_id": _chat(chat_id),
            "caption": caption.text if caption else None,
            "parse_mode": caption.parse_mode if caption else None,
            "message_thread_id": _thread(thread),
            "reply_parameters": (
                ReplyParameters(int(reply_to), allow_sending_without_reply=True)
                if reply_to
                else None
            ),
        }
        bot, kind = self._bot, attachment.kind
        if kind is AttachmentKind.IMAGE and len(data) <= PHOTO_LIMIT:
            try:
                with _translate_errors():
                    sent = await bot.send_photo(photo=upload, **common)
                return str(sent.message_id)
            except BadRequest as exc:
                if not any(code in str(exc).upper() for code in PHOTO_REFUSED):
                    raise
                log.info("telegram: not taken as a photo (%s); sending it as a file", exc)
        with _translate_errors():
            if kind is AttachmentKind.VOICE and attachment.mime == "audio/ogg":
                sent = await bot.send_voice(voice=upload, **common)
            elif kind in (AttachmentKind.VOICE, AttachmentKind.AUDIO):
                sent = await bot.send_audio(audio=upload, **common)
            else:
                sent = await bot.send_document(document=upload, **common)
        return str(sent.message_id)

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        with _translate_errors():  # "message is not modified" ends here, as success
            await self._bot.edit_message_text(
                message.text,
                chat_id=_chat(chat_id),
                message_id=int(message_id),
                parse_mode=message.parse_mode,
                link_preview_options=NO_PREVIEW,
            )

    async def delete(self, chat_id: str, message_id: str) -> None:
        try:
            with _translate_errors():
                await self._bot.delete_message(_chat(chat_id), int(message_id))
        except BadRequest as exc:
            if "message to delete not found" not in str(exc).lower():
                raise  # gone already is what we wanted

    async def draft(
        self, chat_id: str, draft_id: int, message: Rendered, thread: str | None = None
    ) -> None:
        with _translate_errors():
            await self._bot.send_message_draft(
                int(chat_id),  # drafts exist in private chats only: numeric ids
                draft_id,
                message.text,
                message_thread_id=_thread(thread),
                parse_mode=message.parse_mode,
            )

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        with _translate_errors():
            await self._bot.send_chat_action(
                _chat(chat_id), ChatAction.TYPING, message_thread_id=_thread(thread)
            )


@contextlib.contextmanager
def _translate_errors(*, start: bool = False) -> Iterator[None]:
    """Raise PTB's exceptions as `picobot.core.errors` (most specific match), ``from`` the original.

    "message is not modified" (an edit to the same text) is success: the exception is dropped.
    With `start`, a rejected token becomes the clearer "telegram token rejected".
    """
    try:
        yield
    except tg.RetryAfter as exc:
        raise RateLimited(retry_after_seconds(exc.retry_after), str(exc)) from exc
    except tg.ChatMigrated as exc:
        raise ChatMigrated(str(exc.new_chat_id)) from exc
    except tg.BadRequest as exc:  # before NetworkError: BadRequest is one in PTB
        text = exc.message.lower()
        if "message is not modified" in text:
            return
        if "can't parse entities" in text:
            raise FormattingRejected(exc.message) from exc
        if "message is too long" in text:
            raise MessageTooLong(exc.message) from exc
        if "chat not found" in text:
            raise ChatNotFound(exc.message) from exc
        raise BadRequest(exc.message) from exc
    except tg.NetworkError as exc:  # TimedOut included: 5xx, dropped connections, timeouts
        raise ChannelTimeout(exc.message) from exc
    except tg.InvalidToken as exc:
        raise Forbidden("telegram token rejected" if start else exc.message) from exc
    except tg.Forbidden as exc:
        raise Forbidden(exc.message) from exc
    except tg.TelegramError as exc:  # Conflict, EndPointNotFound: not worth retrying
        raise BadRequest(exc.message) from exc


def retry_after_seconds(value: float | dt.timedelta) -> float:
    """`RetryAfter.retry_after` is an int, or a timedelta with ``PTB_TIMEDELTA`` (PTB 23)."""
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _chat(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id  # "@channel" stays


def _thread(thread: str | None) -> int | None:
    return int(thread) if thread else None
