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

Modules: slack_app (bolt wiring), slack_events (event → InboundMessage), slack_users, slack_files,
slack_errors (`translate_errors()`: SDK errors → `picobot.core.errors`).

Cluster mode (`HoldsConnection`): in Socket Mode only the node holding the lease opens the
socket (`open_intake()`); every node checks the token and sends with the Web API. A hand-over
refuses new envelopes (unacknowledged, Slack redelivers them), lets those being handled be
acknowledged, then closes the socket. Over HTTP any node takes the posts: not exclusive.

Outbound: one Web API call per method. The SDK's own retry handlers are off
(``retry_handlers=[]``): the core retries, and the default connection-error handler can post a
message twice.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from channels import slack_files
from channels.inflight import InFlight
from channels.slack_app import CountingSocketHandler, connect_socket, handle_http, make_app
from channels.slack_errors import TYPING_UNAVAILABLE, error_code, translate_errors
from channels.slack_events import event_type, remember, to_inbound
from channels.slack_users import Usernames
from picobot.config import SlackConfig
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
from picobot.core.errors import (
    BadRequest,
    BusClosed,
    ChannelError,
    ChannelTimeout,
)
from picobot.core.messages import Attachment, InboundMessage

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
STANDBY = "sending; socket mode on the lease holder"
INTAKE_DRAIN_TIMEOUT = 5.0  # seconds a hand-over waits for envelopes being handled


class SlackChannel(Channel, ServesHttp, FileTransfer, HoldsConnection):
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
        self._handler: CountingSocketHandler | None = None
        self._deferred = False  # cluster mode: the socket waits for open_intake() (the lease)
        self._intake_open = True  # False while a hand-over refuses new envelopes
        self._inflight = InFlight()
        self._bot_user_id = ""
        self._mention: re.Pattern[str] | None = None
        self._seen: OrderedDict[str, str] = OrderedDict()  # event ids, channel:ts accepted
        self._usernames = Usernames()
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
            with translate_errors():
                auth = await self._client.auth_test()
            self._bot_user_id = str(auth["user_id"])
            self._mention = re.compile(rf"<@{re.escape(self._bot_user_id)}(?:\|[^>]*)?>")
            self._authorization = AuthorizeResult.from_auth_test_response(
                auth_test_response=auth, bot_token=_secret(cfg.bot_token)
            )
            self._app = self._make_app()
            if cfg.mode == "socket" and not self._deferred:
                await self._connect_socket(self._app)
        except BaseException:
            await self.stop()
            raise
        standby = self._deferred and self.exclusive_intake
        self.set_state(State.CONNECTED, STANDBY if standby else "")

    def _make_app(self) -> AsyncApp:
        assert self._session is not None
        assert self._authorization is not None  # start() set it from auth.test
        # "" rather than None: bolt would read SLACK_SIGNING_SECRET from the environment.
        signing_secret = _secret(self.config.signing_secret) or ""
        return make_app(
            self._session,
            self.config.base_url,
            self._authorization,
            signing_secret,
            self._on_event,
            self._on_other_event,
        )

    async def _connect_socket(self, app: AsyncApp) -> None:
        handler = CountingSocketHandler(app, _secret(self.config.app_token), self._inflight)
        self._intake_open = True
        try:
            # Late-bound: the state is set on this channel as it is when a reconnect happens.
            await connect_socket(handler, lambda state, detail: self.set_state(state, detail))
        except BaseException:
            await handler.close_async()
            raise
        self._handler = handler

    # -- cluster mode: the socket only on the node holding the lease (HoldsConnection) ------

    @property
    def exclusive_intake(self) -> bool:
        return self.config.mode == "socket"  # Events API posts may reach any node

    def defer_intake(self, poll_timeout: float) -> None:
        self._deferred = True

    async def open_intake(self) -> None:
        """Open the Socket Mode connection.

        :raises ChannelError: translated (also when the channel has not started).
        """
        if self._handler is not None:
            return
        if self._app is None:
            raise ChannelTimeout("slack: channel not started")
        await self._connect_socket(self._app)
        self.set_state(State.CONNECTED, "socket mode")
        log.info("slack: socket mode connected (this node holds the lease)")

    async def close_intake(self, *, finish_poll: bool) -> None:
        """Close the socket; sending goes on. `finish_poll`: refuse new envelopes first and let
        those being handled be acknowledged (a hand-over)."""
        handler, self._handler = self._handler, None
        if handler is None:
            return
        self._intake_open = False
        if finish_poll and not await self._inflight.finished(INTAKE_DRAIN_TIMEOUT):
            log.warning("slack: some envelopes were not acknowledged; Slack sends them again")
        await handler.close_async()
        if self._app is not None:  # still started: sending works
            self.set_state(State.CONNECTED, STANDBY)

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
        return await handle_http(self._app, request)

    # -- inbound ----------------------------------------------------------------------------

    async def _on_event(self, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        if not self._intake_open:  # handing the socket over: Slack redelivers it to the next
            raise BusClosed("slack: this node is handing its socket over")
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
        msg = replace(msg, sender=await self._usernames.named(self._web(), msg.sender))
        for key in keys:
            remember(self._seen, key)
        try:
            await self.sink(msg)
        except BaseException:
            # Not accepted: forget it and let bolt withhold the ack, so Slack redelivers.
            for key in keys:
                self._seen.pop(key, None)
            raise

    async def _on_other_event(self, body: dict[str, Any]) -> None:
        log.debug("slack: ignored a %s event", event_type(body))

    def _inbound(self, body: dict[str, Any]) -> InboundMessage | None:
        assert self._mention is not None  # set in start(), before any event arrives
        return to_inbound(
            body, channel_name=self.name, bot_user_id=self._bot_user_id, mention=self._mention
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

        :raises ChannelError: translated by `translate_errors`.
        """
        if not message.text:
            raise BadRequest("slack: refusing to post an empty message")
        thread_ts = thread or reply_to
        with translate_errors():
            response = await self._web().chat_postMessage(
                channel=chat_id, text=message.text, thread_ts=thread_ts, mrkdwn=True
            )
        ts = str(response["ts"])
        if thread_ts:
            remember(self._thread_of, ts, thread_ts)
            self._statuses.discard((chat_id, thread_ts))  # Slack clears it when the app replies
        return ts

    async def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """files.info, then ``url_private_download`` (see `slack_files.download`)."""
        token = _secret(self.config.bot_token)
        async for chunk in slack_files.download(self._web(), self._session, token, attachment):
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
        """files_upload_v2 (see `slack_files.upload`): the file's id."""
        return await slack_files.upload(
            self._web(), chat_id, path, attachment, caption=caption, thread_ts=thread or reply_to
        )

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        """chat.update (identical text is fine on Slack).

        :raises BadRequest: ``message_not_found`` and other refusals; see `translate_errors`.
        """
        if not message.text:
            raise BadRequest("slack: refusing to edit a message to empty text")
        with translate_errors():
            await self._web().chat_update(channel=chat_id, ts=message_id, text=message.text)
        # An edit does not clear the "is thinking…" status the way a new reply does.
        thread = self._thread_of.get(message_id)
        if thread and (chat_id, thread) in self._statuses:
            await self._clear_status(chat_id, thread)

    async def delete(self, chat_id: str, message_id: str) -> None:
        """chat.delete; a message that is already gone counts as deleted."""
        with translate_errors():
            try:
                await self._web().chat_delete(channel=chat_id, ts=message_id)
            except SlackApiError as exc:
                if error_code(exc) != "message_not_found":
                    raise

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        """assistant.threads.setStatus; a no-op without a thread or where Slack refuses it."""
        if thread is None or self._typing_unavailable:
            return
        with translate_errors():
            try:
                await self._web().assistant_threads_setStatus(
                    channel_id=chat_id, thread_ts=thread, status=TYPING_STATUS
                )
            except SlackApiError as exc:
                if error_code(exc) not in TYPING_UNAVAILABLE:
                    raise
                self._typing_unavailable = True
                log.info("slack: no typing status (%s); not trying again", error_code(exc))
                return
        self._statuses.add((chat_id, thread))

    async def _clear_status(self, chat_id: str, thread: str) -> None:
        self._statuses.discard((chat_id, thread))
        try:
            with translate_errors():
                await self._web().assistant_threads_setStatus(
                    channel_id=chat_id, thread_ts=thread, status=""
                )
        except ChannelError as exc:  # cosmetic: Slack clears it after 2 minutes anyway
            log.debug("slack: could not clear the status in %s: %s", chat_id, exc)


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""
