"""A fake Telegram Bot API server that the real python-telegram-bot talks to over HTTP.

    async with FakeTelegram() as fake:
        async with telegram.Bot(fake.token, base_url=fake.base_url) as bot:
            await bot.send_message(1, "<b>hi</b>", parse_mode="HTML")
        assert fake.chat_log(1)[0].text == "hi"

It enforces what bites real bots: HTML entity parsing, the 4096-code-point limit, "message is
not modified", flood control (429 + retry_after, with an injectable clock), blocked/missing/
migrated chats, 409 conflicts, and injected faults (500, dropped connection, hang, lost ack).
Rules and parsers live in ``telegram_rules``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from tests.fakes.telegram_files import UPLOAD_KINDS, TelegramFiles, Upload, file_message
from tests.fakes.telegram_rules import (
    NOT_MODIFIED,
    TERMINATED,
    WEBHOOK_ACTIVE,
    ApiError,
    Call,
    ChatAction,
    Draft,
    FakeMessage,
    FloodControl,
    ManualClock,
    default_chat,
    drop_connection,
    full_chat_info,
    inbound_message,
    message_object,
    param_int,
    read_params,
    render_text,
    truthy,
    validate_commands,
)

__all__ = ["Call", "ChatAction", "Draft", "FakeMessage", "FakeTelegram", "ManualClock"]

_CHAT_ACTIONS = frozenset(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document"
    " choose_sticker find_location record_video_note upload_video_note".split()
)
_DEFAULT_EXCLUDED_UPDATES = {"chat_member", "message_reaction", "message_reaction_count"}
_FAULTS = ("500", "drop", "timeout", "drop_after")
_STORED = object()  # deliver_webhook(secret=...) default: the secret given to setWebhook


class FakeTelegram:
    """The Bot API at ``base_url`` (``http://127.0.0.1:PORT/bot``; PTB appends the token)."""

    strict_html_amp = True  # reject bare '&' in HTML (tdlib keeps it as text)

    def __init__(
        self,
        token: str = "123:TEST",
        *,
        bot_username: str = "picobot_test_bot",
        clock: Callable[[], float] = time.monotonic,
        per_chat_burst: int = 3,
        per_chat_rate: float = 1.0,
        group_per_minute: int = 20,
        global_per_second: int = 30,
        enforce_limits: bool = True,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.clock = clock
        # Flood limits; tweak e.g. ``fake.limits.per_chat_burst`` or ``fake.enforce_limits``.
        self.limits = FloodControl(
            clock,
            per_chat_burst=per_chat_burst,
            per_chat_rate=per_chat_rate,
            group_per_minute=group_per_minute,
            global_per_second=global_per_second,
            enforce=enforce_limits,
        )
        self.base_url = ""
        self.base_file_url = ""
        self.files = TelegramFiles(token)  # getFile, downloads and the bot's uploads
        # What the bot did.
        self.messages: dict[int, dict[int, FakeMessage]] = {}
        self.calls: list[Call] = []
        self.rate_limited: list[Call] = []
        self.drafts: list[Draft] = []
        self.chat_actions: list[ChatAction] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}  # key: scope JSON + language
        self.webhook: dict[str, Any] | None = None
        # Inbound side.
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 100_000
        self._allowed_updates: list[str] = []
        self._inbound: dict[int, dict[int, dict[str, Any]]] = {}  # chat -> id -> message
        self._chats: dict[int, dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = {}
        # Controls.
        self._faults: dict[str, deque[str]] = {}
        self._forbidden: dict[int, str] = {}
        self._missing: set[int] = set()
        self._migrated: dict[int, int] = {}
        self._flood_after: dict[int, tuple[int, float]] = {}  # chat -> (sends left, seconds)
        self._conflicts = 0
        # Wake-ups: replaced after every set() so waiters never miss a change.
        self._changed = asyncio.Event()
        self._new_updates = asyncio.Event()
        self._poll_generation = 0
        self.pending_polls = 0  # getUpdates requests currently waiting (wait_for can watch it)
        # getUpdates that arrived while another client's poll was still open: two pollers at
        # once (the older then gets 409 Conflict, as from Telegram).
        self.overlapping_polls = 0
        self.polls_received = 0  # getUpdates requests that arrived (answered or not yet)
        self._open_polls: set[Any] = set()  # transports of getUpdates being answered
        self._shutdown = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            name.lower(): handler
            for name, handler in {
                "getMe": self._get_me,
                "getChat": self._get_chat,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "getUpdates": self._get_updates,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "deleteMessage": self._delete_message,
                "sendChatAction": self._send_chat_action,
                "sendMessageDraft": self._send_message_draft,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "getFile": self.files.get_file,
                **{method: self._send_upload(method) for method in UPLOAD_KINDS},
            }.items()
        }

    @property
    def enforce_limits(self) -> bool:
        return self.limits.enforce

    @enforce_limits.setter
    def enforce_limits(self, value: bool) -> None:
        self.limits.enforce = value

    # ----------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self.files.download)
        # Short shutdown_timeout: hung/long-poll handlers are released on exit anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        self.base_file_url = f"http://127.0.0.1:{port}/file/bot"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutdown.set()  # releases "timeout" faults
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----------------------------------------------------------------- inbound
    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update for getUpdates; assigns ``update_id`` if missing."""
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        self._updates.append(update)
        self._wake_pollers()
        self._notify()
        return update

    def user_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        username: str | None = "alice",
        chat_type: str = "private",
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Queue a text message from a user (see ``telegram_rules.inbound_message``)."""
        message = inbound_message(
            self._new_message_id(chat_id),
            chat_id,
            text,
            user_id=user_id,
            username=username,
            chat_type=chat_type,
            message_thread_id=message_thread_id,
            entities=entities,
        )
        self._chats[chat_id] = message["chat"]
        if reply_to_message_id is not None:
            message["reply_to_message"] = self._stub(chat_id, reply_to_message_id)
        self._inbound.setdefault(chat_id, {})[message["message_id"]] = message
        return self.push_update({"message": message})

    def user_file(
        self,
        chat_id: int,
        kind: str,
        data: bytes = b"",
        *,
        caption: str | None = None,
        **media: Any,
    ) -> dict[str, Any]:
        """Queue a file from a user: `kind` is photo, document, voice, audio, video or
        video_note; `media` goes to `telegram_files.file_message` (size, file_name, ...)."""
        update = self.user_message(chat_id, caption or "")
        message = update["message"]
        del message["text"]
        message.pop("entities", None)
        if caption:
            message["caption"] = caption
        message.update(file_message(self.files, kind, data, **media))
        return update

    # ----------------------------------------------------------------- inspection
    def picobot_config(self, data_dir: object, **telegram: Any) -> dict[str, Any]:
        """A picobot config (parsed-YAML form): Telegram only, pointed at this fake, open to all.

        `telegram` overrides keys of `channels.telegram`; add top-level keys by merging.
        """
        return {
            "data_dir": str(data_dir),
            "http": {"host": "127.0.0.1", "port": 0},
            "channels": {
                "web": {"enabled": False},
                "telegram": {
                    "enabled": True,
                    "token": self.token,
                    "base_url": self.base_url,
                    "base_file_url": self.base_file_url,
                    "allow_from": ["*"],
                    **telegram,
                },
            },
        }

    def chat_log(self, chat_id: int) -> list[FakeMessage]:
        """The bot's non-deleted messages in ``chat_id``, in send order."""
        return [m for m in self.messages.get(chat_id, {}).values() if not m.deleted]

    async def wait_for(
        self, predicate: Callable[[FakeTelegram], bool], timeout: float = 5.0
    ) -> None:
        """Wait until ``predicate(self)`` holds; re-checked after every API call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(
                    f"{c.method} -> {c.status} {c.description or ''}" for c in self.calls[-10:]
                )
                raise TimeoutError(
                    f"FakeTelegram.wait_for: {getattr(predicate, '__name__', predicate)} still "
                    f"false after {timeout}s; last calls:\n  {recent or '(none)'}"
                )
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    # ----------------------------------------------------------------- controls
    def fail_next(self, method: str, kind: str, count: int = 1) -> None:
        """Next ``count`` calls of ``method`` ("*": any) fail with ``kind``:
        "500", "drop" (no answer), "timeout" (hang until shutdown), "drop_after" (lost ack)."""
        if kind not in _FAULTS:
            raise ValueError(f"kind must be one of {_FAULTS}")
        self._faults.setdefault(method.lower(), deque()).extend([kind] * count)

    def flood_wait(self, chat_id: int, seconds: float) -> None:
        """Every send/edit to ``chat_id`` answers 429 until ``seconds`` of clock time pass."""
        self.limits.force(chat_id, seconds)

    def flood_after(self, chat_id: int, sends: int, seconds: float) -> None:
        """After ``sends`` more messages to ``chat_id`` succeed, `flood_wait` it ``seconds``
        (deterministic: a reply's first chunks go out, the next one meets the flood)."""
        self._flood_after[chat_id] = (sends, seconds)

    def forbid(self, chat_id: int, description: str | None = None) -> None:
        self._forbidden[chat_id] = description or (
            "Forbidden: bot was blocked by the user"
            if chat_id > 0
            else "Forbidden: bot was kicked from the group chat"
        )

    def missing(self, chat_id: int) -> None:
        self._missing.add(chat_id)

    def migrate(self, chat_id: int, new_chat_id: int) -> None:
        self._migrated[chat_id] = new_chat_id

    def conflict(self, n: int = 1) -> None:
        """The next ``n`` getUpdates answer 409 as if another instance were polling."""
        self._conflicts += n

    async def deliver_webhook(self, update: dict[str, Any], *, secret: Any = _STORED) -> int:
        """POST ``update`` to the webhook set by setWebhook; return the HTTP status.

        ``secret``: defaults to the stored secret_token; pass a string to send a wrong one,
        or None to omit the X-Telegram-Bot-Api-Secret-Token header."""
        if self.webhook is None:
            raise RuntimeError("no webhook set (the bot never called setWebhook)")
        update = dict(update)
        update.setdefault("update_id", self._next_update_id)
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        token = self.webhook.get("secret_token") if secret is _STORED else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook["url"], json=update, headers=headers) as response,
        ):
            return response.status

    # ----------------------------------------------------------------- HTTP plumbing
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await read_params(request)
        except ApiError as err:
            return self._answer(method, {}, err)
        if request.match_info["token"] != self.token:
            return self._answer(method, params, ApiError(401, "Unauthorized"))
        handler = self._methods.get(method.lower())
        if handler is None:
            return self._answer(method, params, ApiError(404, "Not Found: method not found"))
        fault = self._take_fault(method)
        if fault == "500":
            return self._answer(method, params, ApiError(500, "Internal Server Error"), fault)
        if fault in ("drop", "timeout"):
            self._record(Call(method, params, 0, self.clock(), fault=fault, delivered=False))
            if fault == "timeout":
                await self._shutdown.wait()
            return drop_connection(request)
        transport = request.transport
        polling = method.lower() == "getupdates" and transport is not None
        try:
            if polling:
                self.polls_received += 1
                if any(t is not transport and not t.is_closing() for t in self._open_polls):
                    self.overlapping_polls += 1
                self._open_polls.add(transport)
            outcome: Any = await handler(params)
        except ApiError as err:
            outcome = err
        finally:
            if polling:
                self._open_polls.discard(transport)
        # A client that gave up (e.g. a cancelled long poll) never sees this answer.
        gone = request.transport is None or request.transport.is_closing()
        response = self._answer(method, params, outcome, fault, gone or fault == "drop_after")
        return drop_connection(request) if fault == "drop_after" else response

    def _answer(
        self,
        method: str,
        params: dict[str, Any],
        outcome: Any,
        fault: str | None = None,
        lost: bool = False,
    ) -> web.Response:
        now = self.clock()
        if isinstance(outcome, ApiError):
            call = Call(method, params, outcome.code, now, outcome.description, fault, not lost)
            body = outcome.body()
        else:
            call = Call(method, params, 200, now, fault=fault, delivered=not lost)
            body = {"ok": True, "result": outcome}
        if call.status == 429:
            self.rate_limited.append(call)
        self._record(call)
        return web.json_response(body, status=call.status)

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _wake_pollers(self) -> None:
        self._new_updates.set()
        self._new_updates = asyncio.Event()

    def _take_fault(self, method: str) -> str | None:
        for key in (method.lower(), "*"):
            if queue := self._faults.get(key):
                return queue.popleft()
        return None

    # ----------------------------------------------------------------- shared rules
    def _chat_id(self, params: dict[str, Any]) -> int:
        value = params.get("chat_id")
        if value in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        try:
            chat_id = int(value)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None  # "@name" unsupported
        if chat_id in self._forbidden:
            raise ApiError(403, self._forbidden[chat_id])
        if chat_id in self._missing:
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self._migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self._migrated[chat_id]},
            )
        return chat_id

    def _render(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        return render_text(
            params.get("text"),
            params.get("parse_mode"),
            params.get("entities"),
            strict_amp=self.strict_html_amp,
        )

    def _new_message_id(self, chat_id: int) -> int:
        # One counter per chat for both directions, like private chats on Telegram.
        self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 0) + 1
        return self._next_message_id[chat_id]

    def _chat(self, chat_id: int) -> dict[str, Any]:
        return self._chats.get(chat_id) or default_chat(chat_id)

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "picobot",
            "username": self.bot_username,
        }

    def _stub(self, chat_id: int, message_id: int) -> dict[str, Any]:
        if message_id in self._inbound.get(chat_id, {}):
            return self._inbound[chat_id][message_id]
        if sent := self.messages.get(chat_id, {}).get(message_id):
            return self._message_json(sent)
        return {"message_id": message_id, "date": int(time.time()), "chat": self._chat(chat_id)}

    def _message_json(self, m: FakeMessage) -> dict[str, Any]:
        reply = m.reply_to_message_id
        stub = self._stub(m.chat_id, reply) if reply is not None else None
        return message_object(m, self._chat(m.chat_id), self._bot_user(), stub)

    def _find(self, chat_id: int, message_id: int | None) -> FakeMessage | None:
        message = self.messages.get(chat_id, {}).get(message_id or 0)
        return None if message is None or message.deleted else message

    # ----------------------------------------------------------------- methods
    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        return full_chat_info(self._chat(self._chat_id(params)))

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if url and not url.startswith(("https://", "http://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook = {"url": url, "secret_token": params.get("secret_token")} if url else None
        if truthy(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        if truthy(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, WEBHOOK_ACTIVE)
        if self._conflicts > 0:
            self._conflicts -= 1
            raise ApiError(409, TERMINATED)
        offset = param_int(params, "offset", required=False)
        limit = min(max(param_int(params, "limit", required=False) or 100, 1), 100)
        timeout = float(params.get("timeout") or 0)
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"] or [])
        # A newer getUpdates terminates an older pending one (two bot instances polling).
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()
        if offset is not None:
            if offset < 0:
                del self._updates[: max(len(self._updates) + offset, 0)]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._updates = [u for u in self._updates if self._allowed(u)]
            if self._updates or self._shutdown.is_set():
                return self._updates[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            woken = self._new_updates
            self.pending_polls += 1
            self._notify()
            try:
                async with asyncio.timeout(remaining):
                    await woken.wait()
            except TimeoutError:
                pass
            finally:
                self.pending_polls -= 1
            if generation != self._poll_generation:
                raise ApiError(409, TERMINATED)

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = next((k for k in update if k != "update_id"), "")
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in _DEFAULT_EXCLUDED_UPDATES

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        self.limits.check_forced(chat_id)
        text, entities = self._render(params)
        reply = params.get("reply_parameters") or {}
        reply_to = param_int(reply, "message_id", required=False) if reply else None
        reply_to = reply_to or param_int(params, "reply_to_message_id", required=False)
        known = self._find(chat_id, reply_to) or reply_to in self._inbound.get(chat_id, {})
        if reply_to and not known and not truthy(reply.get("allow_sending_without_reply")):
            raise ApiError(400, "Bad Request: message to be replied not found")
        self.limits.check(chat_id, send=True)
        message = FakeMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            text=text,
            raw_text=params["text"],
            parse_mode=params.get("parse_mode"),
            entities=entities,
            reply_to_message_id=reply_to if known else None,
            message_thread_id=param_int(params, "message_thread_id", required=False),
            reply_markup=params.get("reply_markup"),
            date=int(time.time()),
        )
        self.messages.setdefault(chat_id, {})[message.message_id] = message
        if chat_id in self._flood_after:
            sends, seconds = self._flood_after[chat_id]
            self._flood_after[chat_id] = (sends - 1, seconds)
            if sends <= 1:
                del self._flood_after[chat_id]
                self.flood_wait(chat_id, seconds)
        return self._message_json(message)

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("inline_message_id"):
            raise ApiError(400, "Bad Request: inline messages are not supported by the fake")
        chat_id = self._chat_id(params)
        message_id = param_int(params, "message_id")
        message = self._find(chat_id, message_id)
        if message is None:
            if message_id in self._inbound.get(chat_id, {}):
                raise ApiError(400, "Bad Request: message can't be edited")
            raise ApiError(400, "Bad Request: message to edit not found")
        self.limits.check_forced(chat_id)
        text, entities = self._render(params)
        markup = params.get("reply_markup")
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        self.limits.check(chat_id, send=False)
        message.history.append(message.text)
        message.edits += 1
        message.text, message.raw_text, message.entities = text, params["text"], entities
        message.parse_mode, message.reply_markup = params.get("parse_mode"), markup
        message.edit_date = int(time.time())
        return self._message_json(message)

    def _send_upload(self, method: str) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def send(params: dict[str, Any]) -> dict[str, Any]:
            chat_id = self._chat_id(params)
            self.limits.check_forced(chat_id)
            kind, data, filename = self.files.take_upload(method, params)
            raw = params.get("caption") or ""
            caption = self._render({**params, "text": raw})[0] if raw else ""
            if len(caption) > 1024:
                raise ApiError(400, "Bad Request: message caption is too long")
            self.limits.check(chat_id, send=True)
            message = FakeMessage(
                chat_id=chat_id,
                message_id=self._new_message_id(chat_id),
                text=caption,
                raw_text=params.get("caption") or "",
                parse_mode=params.get("parse_mode"),
                message_thread_id=param_int(params, "message_thread_id", required=False),
                date=int(time.time()),
            )
            self.messages.setdefault(chat_id, {})[message.message_id] = message
            upload = Upload(chat_id, message.message_id, kind, data, filename, caption, params)
            self.files.uploads.append(upload)
            answer = self._message_json(message)
            del answer["text"]
            if caption:
                answer["caption"] = caption
            return {**answer, **self.files.media_json(upload)}

        return send

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        message_id = param_int(params, "message_id")
        if message := self._find(chat_id, message_id):
            message.deleted = True
            return True
        if self._inbound.get(chat_id, {}).pop(message_id or 0, None) is not None:
            return True  # bots may delete incoming messages in private chats and as admins
        raise ApiError(400, "Bad Request: message to delete not found")

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        action = params.get("action")
        if action not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        thread = param_int(params, "message_thread_id", required=False)
        self.chat_actions.append(ChatAction(chat_id, action, thread, self.clock()))
        return True

    async def _send_message_draft(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        if self._chat(chat_id)["type"] != "private":
            raise ApiError(400, "Bad Request: message drafts can be sent only to private chats")
        draft_id = param_int(params, "draft_id")
        if not draft_id:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        self.limits.check_forced(chat_id)
        text, _ = self._render(params)
        thread = param_int(params, "message_thread_id", required=False)
        parse_mode = params.get("parse_mode")
        draft = Draft(chat_id, draft_id, text, params["text"], parse_mode, thread, self.clock())
        self.drafts.append(draft)
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True) + "|" + (params.get("language_code") or "")

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = validate_commands(params.get("commands"))
        self.commands[self._commands_key(params)] = commands
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(params), [])

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True
