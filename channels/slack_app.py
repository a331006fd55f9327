"""slack-bolt's wiring: the app, the Socket Mode connection and the Events API route."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from channels.inflight import InFlight
from channels.slack_errors import translate_errors
from picobot.core.channel import State

CONNECT_TIMEOUT = 30.0  # the SDK retries a failing WebSocket connect forever; start() does not

Listener = Callable[..., Awaitable[None]]  # bolt passes the arguments a listener names


def make_app(
    session: aiohttp.ClientSession,
    base_url: str,
    authorization: AuthorizeResult,
    signing_secret: str,
    on_event: Listener,
    on_other_event: Listener,
) -> AsyncApp:
    """A bolt app that acks only after the listener returned, authorized by `authorization`."""
    # A client without a token: bolt then authorizes through `authorize` (our auth.test
    # result) instead of calling auth.test itself. It sets the token per request.
    client = AsyncWebClient(base_url=base_url, session=session, retry_handlers=[])

    async def authorize() -> AuthorizeResult:  # bolt passes only the arguments it names
        return authorization

    app = AsyncApp(
        name="picobot",
        client=client,
        authorize=authorize,
        signing_secret=signing_secret,
        process_before_response=True,  # ack only after the sink accepted the message
    )
    app.event("message")(on_event)
    app.event("app_mention")(on_event)
    app.event(re.compile(".*"))(on_other_event)  # ack the rest, or Slack redelivers
    return app


class CountingSocketHandler(AsyncSocketModeHandler):
    """bolt's Socket Mode handler, counting the envelopes being handled (until their ack was
    sent), so that a hand-over closes the socket only after they were acknowledged."""

    def __init__(self, app: AsyncApp, app_token: str, inflight: InFlight) -> None:
        super().__init__(app, app_token)
        self._inflight = inflight

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self._inflight.track():
            await super().handle(client, req)


async def connect_socket(
    handler: AsyncSocketModeHandler, set_state: Callable[[State, str], None]
) -> None:
    """Open the WebSocket; reconnects the SDK makes later are reported through `set_state`."""
    client = handler.client
    # Fetch the URL ourselves: a bad app token then fails start() instead of having the
    # SDK retry forever, and the connect below gets a time limit for the same reason.
    with translate_errors():
        client.wss_uri = await client.issue_new_wss_url()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await handler.connect_async()
    # The SDK reconnects by itself (server close, `disconnect` frame, stale pings), always
    # through connect(); that is the one place a reconnect can be observed.
    connect = client.connect

    async def observed_connect() -> None:
        if not client.closed:
            set_state(State.DISCONNECTED, "socket mode: reconnecting")
        await connect()
        if not client.closed:
            set_state(State.CONNECTED, "")

    client.connect = observed_connect  # type: ignore[method-assign]


async def handle_http(app: AsyncApp | None, request: web.Request) -> web.StreamResponse:
    """One Events API post, dispatched to bolt (None: the channel is not started)."""
    # bolt verifies the signature (401 if bad or older than 5 min) and answers
    # url_verification itself; the response is written after the listener returned.
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
