"""Slack, on slack-bolt's `AsyncApp`: Socket Mode (default) or signed Events API posts.

Inbound: DMs (`message` events, `channel_type: im`) and messages in channels (`app_mention`, or
`message` when the app also subscribes to channel messages and `group_policy` is open). Channel
messages are answered in their thread, so each thread is its own session. Bot messages, our own
and edit/join/... subtypes are ignored; malformed events are logged and acknowledged.

Ack timing: bolt runs with ``process_before_response=True``, so the envelope (Socket Mode) or the
HTTP response (Events API) is sent only after the sink accepted the message; if the sink raises,
nothing is acknowledged and Slack redelivers. Redeliveries carry the same `event_id` (and the same
channel + ts): a bounded LRU of those keys makes each message reach the sink once.

Authorization: `start()` calls auth.test once and bolt gets that result through `authorize`,
so no event waits on (or is lost to) a second auth.test: bolt's own single-team authorization
calls it on the first events and, if Slack answers 500, acknowledges them with an apology.

Senders: `users.info` gives each sender's Slack username (once per user, cached), so
``allow_from`` can list ``@username`` as well as user ids. If the lookup fails, the event is
not acknowledged and Slack redelivers it.

Outbound: one Web API call per method; SDK errors become `picobot.core.errors` in
`_translate_errors()`. The SDK's own retry handlers are off (``retry_handlers=[]``): the core
retries, and the default connection-error handler can post a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from channels.downloads import kind_of, stream_url
from picobot.config import SlackConfig
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
    ChannelError,
    ChannelTimeout,
    ChatNotFound,
    Forbidden,
    MessageTooLong,
    PermanentError,
    RateLimited,
)
from picobot.core.messages import Attachment, InboundMessage, Sender

__all__ = ["CAPABILITIES", "SlackChannel"]

log = logging.getLogger("picobot.slack")

CAPABILITIES = Capabilities(
    # Slack truncates at 40 000 but recommends at most 4 000 characters, and may break a longer
    # message itself (inside a code block too). It does not say how it counts: UTF-16 units are
    # never fewer than characters or code points.
    max_length=4_000,
    length_unit="utf16",
    format="slack_mrkdwn",
    can_edit=True,
    can_delete=True,
    can_type=True,  # assistant.threads.setStatus, only with a thread_ts
    typing_interval=10.0,  # the status lasts up to 2 min; posting in the thread clears it
    flush_interval=1.0,
    max_upload=1_000_000_000,  # Slack takes files up to 1 GB
    max_caption=4000,  # files.completeUploadExternal's initial_comment
    rate=RateBudget(
        # chat.postMessage: 1/s per channel. Slack measures arrivals, and a request that travels
        # faster than the one before it (a reused connection) arrives early: keep a margin.
        per_chat=Rate(1 / 1.1, burst=1),
        # chat.update has no per-channel limit, so edits get their own bucket (the placeholder's
        # post does not delay the reply's edit), paced like the streaming flushes; overall it
        # is Tier 3 (~50/min) per workspace, and a small burst keeps clear of that.
        edits_per_chat=Rate(1.0, burst=1),
        edits_overall=Rate.per_minute(50, burst=10),
    ),
)

TYPING_STATUS = "is thinking…"
API_TIMEOUT = 30.0  # seconds per Web API call
CONNECT_TIMEOUT = 30.0  # the SDK retries a failing WebSocket connect forever; start() does not
LRU_SIZE = 2048  # event keys remembered to drop redeliveries; our ts -> thread_ts
USER_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message"})  # written by people

# Slack error codes, by what they mean for us.
FORBIDDEN = frozenset(
    "not_in_channel is_archived not_authed invalid_auth account_inactive token_revoked"
    " token_expired missing_scope no_permission not_allowed_token_type restricted_action"
    " restricted_action_read_only_channel restricted_action_thread_only_channel"
    " restricted_action_non_threadable_channel team_access_not_granted ekm_access_denied".split()
)
NOT_FOUND = frozenset({"channel_not_found"})
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long"})
SERVER_TROUBLE = frozenset("internal_error fatal_error service_unavailable request_timeout".split())
# setStatus answers these when the workspace or app cannot show a status: stop asking.
TYPING_UNAVAILABLE = frozenset(
    "unknown_method not_allowed not_allowed_token_type missing_scope feature_not_enabled"
    " method_not_supported_for_channel_type no_permission access_denied".split()
)


def _error_code(exc: SlackApiError) -> str | None:
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def _retry_after(headers: Any) -> float:
    try:
        return float(headers.get("Retry-After", 1))
    except (AttributeError, TypeError, ValueError):
        return 1.0


def _from_api_error(exc: SlackApiError) -> ChannelError:
    """The picobot error for an answer from Slack (most specific first)."""
    response = exc.response
    # A SlackResponse has `status_code`; on an unreadable body the SDK hands over aiohttp's own.
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    code = _error_code(exc)
    url = str(getattr(response, "api_url", None) or getattr(response, "url", ""))
    what = f"slack {url.rsplit('/', 1)[-1] or 'call'}: {code or f'HTTP {status}'}"
    if status == 429 or code == "ratelimited":
        return RateLimited(_retry_after(getattr(response, "headers", None) or {}), what)
    if status >= 500 or code in SERVER_TROUBLE:
        return ChannelTimeout(what)
    if code in FORBIDDEN:
        return Forbidden(what)
    if code in NOT_FOUND:
        return ChatNotFound(what)
    if code in TOO_LONG:
        return MessageTooLong(what)
    return BadRequest(what)  # invalid_blocks, message_not_found, cant_update_message, ...


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """Raise the `picobot.core.errors` equivalent of any slack_sdk / aiohttp error, ``from`` it.

    :raises RateLimited: HTTP 429 / ``ratelimited``, with `retry_after` from ``Retry-After``.
    :raises ChannelTimeout: connection errors, timeouts, 5xx and Slack's own server errors.
    :raises Forbidden: not in the channel, archived, bad or revoked token, missing scope.
    :raises ChatNotFound: ``channel_not_found``.
    :raises MessageTooLong: ``msg_too_long``.
    :raises BadRequest: any other refusal (``invalid_blocks``, ``message_not_found``, ...).
    """
    try:
        yield
    except ChannelError:
        raise  # already ours (ChannelTimeout is also a TimeoutError)
    except SlackApiError as exc:
        raise _from_api_error(exc) from exc
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise ChannelTimeout(f"slack: {type(exc).__name__}: {exc}") from exc
    except SlackClientError as exc:  # the SDK refused to build the request
        raise BadRequest(f"slack: {exc}") from exc


def _is_file(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), str)


def _attachment(file: dict[str, Any]) -> Attachment:
    """A Slack file object as a reference (its id: files.info gives a current URL)."""
    mime = str(file.get("mimetype") or "")
    size = file.get("size")
    return Attachment(
        kind_of(mime, voice=file.get("subtype") == "slack_audio"),  # a clip recorded in Slack
        name=str(file.get("name") or ""),
        mime=mime,
        size=size if isinstance(size, int) else None,
        source=file["id"],
    )


def _remember(lru: OrderedDict[str, str], key: str, value: str = "") -> None:
    """Add `key` to a bounded LRU mapping, forgetting the oldest key past `LRU_SIZE`."""
    lru[key] = value
    lru.move_to_end(key)
    if len(lru) > LRU_SIZE:
        lru.popitem(last=False)


class SlackChannel(Channel, ServesHttp, FileTransfer):
    """Slack via slack-bolt. See the module docstring for the ack and dedupe rules.

    Files: downloads need the ``files:read`` scope (files.info, then ``url_private_download``
    with the bot token); uploads need ``files:write`` (`files_upload_v2`).
    """

    name = "slack"
    capabilities = CAPABILITIES
    config: SlackConfig

    def __init__(
        self, config: SlackConfig, sink: InboundSink, services: Services = NO_SERVICES
    ) -> None:
        super().__init__(config, sink, services)
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._app: AsyncApp | None = None
        self._handler: AsyncSocketModeHandler | None = None
        self._bot_user_id = ""
        self._mention: re.Pattern[str] | None = None
        self._seen: OrderedDict[str, str] = OrderedDict()  # event ids, channel:ts accepted
        self._usernames: OrderedDict[str, str] = OrderedDict()  # user id -> Slack username
        self._no_usernames = False  # users.info refused for good (no users:read scope)
        self._authorization: AuthorizeResult | None = None  # start()'s auth.test, for bolt
        self._thread_of: OrderedDict[str, str] = OrderedDict()  # our ts -> thread_ts
        self._statuses: set[tuple[str, str]] = set()  # (channel, thread) showing our status
        self._typing_unavailable = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the bot token (auth.test); in Socket Mode, open the WebSocket.

        :raises ChannelError: translated; everything opened so far is closed again.
        """
        cfg = self.config
        try:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT))
            self._client = AsyncWebClient(
                token=_secret(cfg.bot_token),
                base_url=cfg.base_url,
                session=self._session,
                retry_handlers=[],  # the core retries; the SDK's default can duplicate posts
            )
            with _translate_errors():
                auth = await self._client.auth_test()
            self._bot_user_id = str(auth["user_id"])
            self._mention = re.compile(rf"<@{re.escape(self._bot_user_id)}(?:\|[^>]*)?>")
            self._authorization = AuthorizeResult.from_auth_test_response(
                auth_test_response=auth, bot_token=_secret(cfg.bot_token)
            )
            self._app = self._make_app()
            if cfg.mode == "socket":
                await self._connect_socket(self._app)
        except BaseException:
            await self.stop()
            raise
        self.set_state(State.CONNECTED)

    def _make_app(self) -> AsyncApp:
        assert self._session is not None
        # A client without a token: bolt then authorizes through `authorize` (our auth.test
        # result) instead of calling auth.test itself. It sets the token per request.
        client = AsyncWebClient(
            base_url=self.config.base_url, session=self._session, retry_handlers=[]
        )
        authorization = self._authorization
        assert authorization is not None  # start() set it from auth.test

        async def authorize() -> AuthorizeResult:  # bolt passes only the arguments it names
            return authorization

        app = AsyncApp(
            name="picobot",
            client=client,
            authorize=authorize,
            # "" rather than None: bolt would read SLACK_SIGNING_SECRET from the environment.
            signing_secret=_secret(self.config.signing_secret) or "",
            process_before_response=True,  # ack only after the sink accepted the message
        )
        app.event("message")(self._on_event)
        app.event("app_mention")(self._on_event)
        app.event(re.compile(".*"))(self._on_other_event)  # ack the rest, or Slack redelivers
        return app

    async def _connect_socket(self, app: AsyncApp) -> None:
        self._handler = AsyncSocketModeHandler(app, _secret(self.config.app_token))
        client = self._handler.client
        # Fetch the URL ourselves: a bad app token then fails start() instead of having the
        # SDK retry forever, and the connect below gets a time limit for the same reason.
        with _translate_errors():
            client.wss_uri = await client.issue_new_wss_url()
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._handler.connect_async()
        # The SDK reconnects by itself (server close, `disconnect` frame, stale pings), always
        # through connect(); that is the one place a reconnect can be observed.
        connect = client.connect

        async def observed_connect() -> None:
            if not client.closed:
                self.set_state(State.DISCONNECTED, "socket mode: reconnecting")
            await connect()
            if not client.closed:
                self.set_state(State.CONNECTED)

        client.connect = observed_connect  # type: ignore[method-assign]

    async def stop(self) -> None:
        """Close the WebSocket and the HTTP session. Safe after a failed or repeated start."""
        handler, self._handler = self._handler, None
        session, self._session = self._session, None
        self._app = self._client = None
        self._authorization = None
        try:
            if handler is not None:
                await handler.close_async()
        finally:
            if session is not None:
                await session.close()

    def http_routes(self) -> Sequence[web.AbstractRouteDef]:
        if self.config.mode != "http":
            return ()
        return [web.post(self.config.path, self._on_http)]

    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        # bolt verifies the signature (401 if bad or older than 5 min) and answers
        # url_verification itself; the response is written after the listener returned.
        app = self._app
        if app is None:
            return web.json_response({"error": "slack channel not started"}, status=503)
        # What bolt would crash on (500) before it even checks the signature: refuse here.
        if not request.headers.get("X-Slack-Request-Timestamp", "").isdigit():
            return web.json_response(
                {"error": "X-Slack-Request-Timestamp must be a number"}, status=400
            )
        try:
            bolt_request = await to_bolt_request(request)
        except ValueError:  # not JSON, not form data, not UTF-8
            return web.json_response({"error": "the body is malformed"}, status=400)
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    # -- inbound ----------------------------------------------------------------------------

    async def _on_event(self, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        msg = self._inbound(body)
        if msg is None:
            return
        keys = [msg.id]
        if isinstance(body.get("event_id"), str):
            keys.append(body["event_id"])
        if any(key in self._seen for key in keys):
            retry = request.headers.get("x-slack-retry-num", ["0"])[0]
            log.info("slack: ignored a redelivered event %s (retry %s)", keys[-1], retry)
            return
        # Before the event counts as seen: if the lookup fails, a redelivery tries again.
        msg = replace(msg, sender=await self._named(msg.sender))
        for key in keys:
            _remember(self._seen, key)
        try:
            await self.sink(msg)
        except BaseException:
            # Not accepted: forget it and let bolt withhold the ack, so Slack redelivers.
            for key in keys:
                self._seen.pop(key, None)
            raise

    async def _named(self, sender: Sender) -> Sender:
        """`sender` with their Slack username (users.info, once per user). Without the
        `users:read` scope there are no usernames, and ``allow_from`` matches ids only.

        :raises TransientError: the lookup failed for now (the event is not acknowledged).
        """
        name = self._usernames.get(sender.id)
        if name is None and not self._no_usernames:
            user: object = None
            try:
                with _translate_errors():
                    user = (await self._web().users_info(user=sender.id)).get("user")
            except Forbidden as exc:  # missing_scope, ...: do not ask again
                self._no_usernames = True
                log.warning("slack: no usernames (%s); allow_from matches user ids only", exc)
                return sender
            except PermanentError as exc:  # user_not_found, ...
                log.info("slack: no username for %s (%s)", sender.id, exc)
            name = str(user.get("name") or "") if isinstance(user, dict) else ""
            _remember(self._usernames, sender.id, name)
        return replace(sender, username=name or None)

    async def _on_other_event(self, body: dict[str, Any]) -> None:
        log.debug("slack: ignored a %s event", _event_type(body))

    def _inbound(self, body: dict[str, Any]) -> InboundMessage | None:
        """The message in `body`, or None for events that are not for the agent."""
        event = body.get("event")
        kind = _event_type(body)
        if not isinstance(event, dict):
            log.warning("slack: ignored a malformed %s event (no event object)", kind)
            return None
        subtype = event.get("subtype")
        if subtype is not None and subtype not in USER_SUBTYPES:
            return None  # edits, deletions, joins, topic changes, bot_message, ...
        if event.get("bot_id") or event.get("user") == self._bot_user_id:
            return None  # other bots (no loops) and ourselves
        channel, user, ts = event.get("channel"), event.get("user"), event.get("ts")
        text, thread_ts = event.get("text", ""), event.get("thread_ts")
        if not (_nonempty(channel, user, ts) and isinstance(text, str)) or not (
            thread_ts is None or _nonempty(thread_ts)
        ):
            log.warning("slack: ignored a malformed %s event %s", kind, body.get("event_id"))
            return None
        assert self._mention is not None  # set in start(), before any event arrives
        mentioned = kind == "app_mention" or bool(self._mention.search(text))
        text = re.sub(r"[ \t]{2,}", " ", self._mention.sub("", text)).strip()
        files = event.get("files")
        attachments = tuple(
            _attachment(f) for f in (files if isinstance(files, list) else []) if _is_file(f)
        )
        if not text and not attachments:
            return None  # a bare mention
        is_dm = event.get("channel_type") == "im"
        return InboundMessage(
            channel=self.name,
            chat_id=str(channel),
            sender=Sender(str(user)),
            text=text,
            id=f"{channel}:{ts}",  # the same for redeliveries and for message + app_mention
            message_id=ts,
            # Channels: answer in the message's thread (each thread is a session). DMs stay
            # one conversation unless the user opened a thread.
            thread=thread_ts if is_dm else (thread_ts or ts),
            is_group=not is_dm,
            mentioned=mentioned,
            metadata={"event_id": body.get("event_id"), "team": body.get("team_id")},
            attachments=attachments,
        )

    # -- outbound ---------------------------------------------------------------------------

    def _web(self) -> AsyncWebClient:
        if self._client is None:
            raise ChannelTimeout("slack: channel not started")
        return self._client

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        """chat.postMessage; in `thread` (or under `reply_to`) when given. Returns the ts.

        :raises ChannelError: translated by `_translate_errors`.
        """
        if not message.text:
            raise BadRequest("slack: refusing to post an empty message")
        thread_ts = thread or reply_to
        with _translate_errors():
            response = await self._web().chat_postMessage(
                channel=chat_id, text=message.text, thread_ts=thread_ts, mrkdwn=True
            )
        ts = str(response["ts"])
        if thread_ts:
            _remember(self._thread_of, ts, thread_ts)
            self._statuses.discard((chat_id, thread_ts))  # Slack clears it when the app replies
        return ts

    async def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """files.info for a current URL, then ``url_private_download`` with the bot token.

        :raises Forbidden: the bot may not read the file (not shared with it, no files:read).
        """
        with _translate_errors():
            try:
                info = await self._web().files_info(file=attachment.source or "")
            except SlackApiError as exc:
                if _error_code(exc) in ("file_not_found", "file_deleted"):
                    raise Forbidden(f"slack files.info: {_error_code(exc)}") from exc
                raise
        file = info.get("file") or {}
        url = file.get("url_private_download") or file.get("url_private")
        if not url or self._session is None:
            raise BadRequest("slack: the file has no download URL")
        headers = {"Authorization": f"Bearer {_secret(self.config.bot_token)}"}
        html = str(file.get("mimetype", "")).startswith("text/html")
        async for chunk in stream_url(
            self._session, url, "slack", headers=headers, expect_html=html
        ):
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
        """files.getUploadURLExternal + upload + files.completeUploadExternal (slack_sdk's
        `files_upload_v2`); the file's id, as Slack gives no message ts for it."""
        name = attachment.name or f"{attachment.kind}"
        with _translate_errors():
            response = await self._web().files_upload_v2(
                channel=chat_id,
                file=str(path),
                filename=name,
                title=name,
                initial_comment=caption.text if caption else None,
                thread_ts=thread or reply_to,
            )
        file = response.get("file") or {}
        return str(file.get("id", ""))

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        """chat.update (identical text is fine on Slack).

        :raises BadRequest: ``message_not_found`` and other refusals; see `_translate_errors`.
        """
        if not message.text:
            raise BadRequest("slack: refusing to edit a message to empty text")
        with _translate_errors():
            await self._web().chat_update(channel=chat_id, ts=message_id, text=message.text)
        # An edit does not clear the "is thinking…" status the way a new reply does.
        thread = self._thread_of.get(message_id)
        if thread and (chat_id, thread) in self._statuses:
            await self._clear_status(chat_id, thread)

    async def delete(self, chat_id: str, message_id: str) -> None:
        """chat.delete; a message that is already gone counts as deleted."""
        with _translate_errors():
            try:
                await self._web().chat_delete(channel=chat_id, ts=message_id)
            except SlackApiError as exc:
                if _error_code(exc) != "message_not_found":
                    raise

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        """assistant.threads.setStatus; a no-op without a thread or where Slack refuses it."""
        if thread is None or self._typing_unavailable:
            return
        with _translate_errors():
            try:
                await self._web().assistant_threads_setStatus(
                    channel_id=chat_id, thread_ts=thread, status=TYPING_STATUS
                )
            except SlackApiError as exc:
                if _error_code(exc) not in TYPING_UNAVAILABLE:
                    raise
                self._typing_unavailable = True
                log.info("slack: no typing status (%s); not trying again", _error_code(exc))
                return
        self._statuses.add((chat_id, thread))

    async def _clear_status(self, chat_id: str, thread: str) -> None:
        self._statuses.discard((chat_id, thread))
        try:
            with _translate_errors():
                await self._web().assistant_threads_setStatus(
                    channel_id=chat_id, thread_ts=thread, status=""
                )
        except ChannelError as exc:  # cosmetic: Slack clears it after 2 minutes anyway
            log.debug("slack: could not clear the status in %s: %s", chat_id, exc)


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _nonempty(*values: object) -> bool:
    return all(isinstance(v, str) and v for v in values)


def _event_type(body: dict[str, Any]) -> str:
    event = body.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else "unknown"
