"""The fake Slack, exercised with the real slack_sdk and slack-bolt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.fake_slack import BOT_USER_ID, FakeSlack, ManualClock

SECRET = "signing-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


def web_client(fake: FakeSlack, token: str | None = None, **kw: Any) -> AsyncWebClient:
    # retry_handlers=[]: the SDK's default connection-error retry would hide faults.
    kw.setdefault("retry_handlers", [])
    return AsyncWebClient(token=token or fake.bot_token, base_url=fake.base_url, **kw)


async def api_error(coro: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await coro
    return info.value


# ---- Web API ----


async def test_auth_test_answers_per_token_type(fake: FakeSlack) -> None:
    resp = await web_client(fake).auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"]) == (BOT_USER_ID, "BBOT", "T1")

    err = await api_error(web_client(fake, fake.app_token).auth_test())
    assert err.response["error"] == "not_allowed_token_type"
    err = await api_error(web_client(fake, "xoxb-wrong").auth_test())
    assert err.response["error"] == "invalid_auth"
    err = await api_error(web_client(fake).api_call("nope.nothing"))
    assert err.response["error"] == "unknown_method"


async def test_connections_open_needs_app_token(fake: FakeSlack) -> None:
    resp = await web_client(fake).apps_connections_open(app_token=fake.app_token)
    assert resp["url"].startswith(f"ws://127.0.0.1:{fake.port}/socket?ticket=")
    bot = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url, retry_handlers=[])
    err = await api_error(bot.api_call("apps.connections.open"))
    assert err.response["error"] == "not_allowed_token_type"


async def test_post_update_delete_round_trip(fake: FakeSlack) -> None:
    client = web_client(fake)
    first = await client.chat_postMessage(channel="C1", text="hello", mrkdwn=False)
    ts = first["ts"]
    assert first["message"]["text"] == "hello" and first["channel"] == "C1"
    fake.enforce_limits = False  # next post is in the same channel within a second
    reply = await client.chat_postMessage(channel="C1", text="in thread", thread_ts=ts)
    assert float(reply["ts"]) > float(ts)
    assert fake.messages["C1"][ts].mrkdwn is False

    await client.chat_update(channel="C1", ts=ts, text="hello")  # identical text is fine
    updated = await client.chat_update(channel="C1", ts=ts, text="hello, world")
    assert updated["text"] == "hello, world"
    msg = fake.messages["C1"][ts]
    assert (msg.text, msg.edits, msg.history) == ("hello, world", 2, ["hello", "hello"])
    assert [m.text for m in fake.channel_log("C1", thread_ts=ts)] == ["hello, world", "in thread"]

    await client.chat_delete(channel="C1", ts=ts)
    assert msg.deleted and [m.ts for m in fake.channel_log("C1")] == [reply["ts"]]
    err = await api_error(client.chat_update(channel="C1", ts=ts, text="again"))
    assert err.response["error"] == "message_not_found"
    err = await api_error(client.chat_delete(channel="C1", ts="1.000000"))
    assert err.response["error"] == "message_not_found"
    assert [c.method for c in fake.calls].count("chat.update") == 3


async def test_text_limits_and_channel_errors(fake: FakeSlack) -> None:
    fake.enforce_limits = False
    client = web_client(fake)
    err = await api_error(client.chat_postMessage(channel="C1", text="x" * 40_001))
    assert err.response["error"] == "msg_too_long"
    ok = await client.chat_postMessage(channel="C1", text="x" * 40_000)
    assert len(fake.messages["C1"][ok["ts"]].text) == 40_000
    long_block = [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}]
    err = await api_error(client.chat_postMessage(channel="C1", text="t", blocks=long_block))
    assert err.response["error"] == "invalid_blocks"
    # (chat_postMessage(text="") would raise the SDK's UserWarning under filterwarnings=error)
    err = await api_error(client.api_call("chat.postMessage", json={"channel": "C1"}))
    assert err.response["error"] == "no_text"

    fake.forbid("C2")
    fake.missing("C3")
    err = await api_error(client.chat_postMessage(channel="C2", text="hi"))
    assert err.response["error"] == "not_in_channel"
    err = await api_error(client.chat_postMessage(channel="C3", text="hi"))
    assert err.response["error"] == "channel_not_found"
    assert "C2" not in fake.messages and "C3" not in fake.messages


async def test_post_rate_limit_per_channel_with_retry_after() -> None:
    clock = ManualClock()
    async with FakeSlack(clock=clock) as fake:
        client = web_client(fake)
        await client.chat_postMessage(channel="C1", text="one")
        err = await api_error(client.chat_postMessage(channel="C1", text="two"))
        assert err.response.status_code == 429
        assert err.response.headers["Retry-After"] == "1"
        assert err.response["error"] == "ratelimited"
        await client.chat_postMessage(channel="C2", text="other channel has its own bucket")
        clock.advance(1.0)
        await client.chat_postMessage(channel="C1", text="two")
        assert [c.params["text"] for c in fake.rate_limited] == ["two"]
        assert [m.text for m in fake.channel_log("C1")] == ["one", "two"]


async def test_update_rate_limit_is_per_workspace() -> None:
    clock = ManualClock()
    async with FakeSlack(clock=clock, update_per_minute=6, update_burst=2) as fake:
        client = web_client(fake)
        ts1 = (await client.chat_postMessage(channel="C1", text="a"))["ts"]
        ts2 = (await client.chat_postMessage(channel="C2", text="b"))["ts"]
        await client.chat_update(channel="C1", ts=ts1, text="a1")
        await client.chat_update(channel="C2", ts=ts2, text="b1")
        err = await api_error(client.chat_update(channel="C1", ts=ts1, text="a2"))
        assert err.response.status_code == 429
        assert err.response.headers["Retry-After"] == "10"  # 6/min -> one every 10 s
        clock.advance(10)
        await client.chat_update(channel="C1", ts=ts1, text="a2")
        assert fake.messages["C1"][ts1].text == "a2" and len(fake.rate_limited) == 1


async def test_force_429_then_sdk_rate_limit_handler_retries(fake: FakeSlack) -> None:
    fake.force_429("chat.postMessage", channel="C9", retry_after=7)
    err = await api_error(web_client(fake).chat_postMessage(channel="C9", text="hi"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "7"
    assert "C9" not in fake.messages

    # The SDK's opt-in handler sleeps Retry-After (+ jitter < 1 s) and retries by itself.
    fake.force_429("auth.test", retry_after=0)
    client = web_client(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    assert (await client.auth_test())["ok"]
    assert [c.status for c in fake.calls_to("auth.test")] == [429, 200]


async def test_fail_next_500_and_drop(fake: FakeSlack) -> None:
    client = web_client(fake)
    fake.fail_next("chat.postMessage", "500")
    err = await api_error(client.chat_postMessage(channel="C1", text="hi"))
    assert err.response.status_code == 500
    assert "C1" not in fake.messages

    fake.fail_next("auth.test", "drop")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.auth_test()
    assert (await client.auth_test())["ok"]  # the fault was used up
    assert [(c.status, c.error) for c in fake.calls_to("auth.test")] == [
        (0, "dropped"),
        (200, None),
    ]


async def test_lost_response_plus_sdk_default_retry_duplicates_a_post(fake: FakeSlack) -> None:
    # The SDK's default AsyncConnectionErrorRetryHandler re-sends after a dropped connection:
    # when the first attempt had already landed, the user sees the reply twice.
    fake.fail_next("chat.postMessage", "lost_response")
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)  # default handlers
    fake.enforce_limits = False
    await client.chat_postMessage(channel="C1", text="once")
    assert [m.text for m in fake.channel_log("C1")] == ["once", "once"]


async def test_streaming_methods_with_sdk_chat_stream(fake: FakeSlack) -> None:
    client = web_client(fake)
    stream = await client.chat_stream(channel="D1", thread_ts="1700000000.000001", buffer_size=5)
    await stream.append(markdown_text="Hello ")
    await stream.append(markdown_text="world")
    await stream.stop(markdown_text="!")
    assert stream.ts is not None
    msg = fake.messages["D1"][stream.ts]
    assert (msg.text, msg.streamed, msg.streaming) == ("Hello world!", True, False)
    assert msg.thread_ts == "1700000000.000001"
    assert {c["type"] for c in msg.chunks} == {"markdown_text"}
    assert [c.method for c in fake.calls] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]

    # Raw methods with markdown_text work too.
    ts = (await client.chat_startStream(channel="C1", thread_ts="1.0", markdown_text="a"))["ts"]
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="b")
    await client.chat_stopStream(channel="C1", ts=ts)
    assert fake.messages["C1"][ts].text == "ab"

    err = await api_error(client.chat_appendStream(channel="D1", ts=stream.ts, markdown_text="x"))
    assert err.response["error"] == "message_not_in_streaming_state"
    err = await api_error(client.api_call("chat.startStream", json={"channel": "D1"}))
    assert err.response["error"] == "invalid_arguments"
    err = await api_error(
        client.chat_startStream(channel="D1", thread_ts="1.0", markdown_text="z" * 12_001)
    )
    assert err.response["error"] == "msg_too_long"


async def test_set_status_and_users_info(fake: FakeSlack) -> None:
    client = web_client(fake)
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.0", status="thinking…")
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.0", status="")
    assert [s["status"] for s in fake.statuses] == ["thinking…", ""]
    user = (await client.users_info(user="U1"))["user"]
    assert user["id"] == "U1" and user["is_bot"] is False


async def test_wait_for_times_out(fake: FakeSlack) -> None:
    with pytest.raises(TimeoutError):
        await fake.wait_for(lambda: bool(fake.calls), timeout=0.05)


# ---- Socket Mode, raw WebSocket ----


async def test_raw_socket_hello_envelope_and_ack(fake: FakeSlack) -> None:
    url = (await web_client(fake, fake.app_token).apps_connections_open(app_token=fake.app_token))[
        "url"
    ]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url.replace("ticket=", "ticket=999"))
        async with session.ws_connect(url, autoping=False) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["connection_info"]["app_id"] == "A1"
            await ws.ping(b"p")
            pong = await ws.receive(timeout=5)
            assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"p")

            event = fake.dm_event("U1", "hi")
            envelope_id = await fake.push_event(event)
            envelope = await ws.receive_json(timeout=5)
            assert envelope["envelope_id"] == envelope_id
            assert envelope["type"] == "events_api" and envelope["retry_attempt"] == 0
            assert envelope["payload"]["event"] == event
            assert envelope["payload"]["event_id"].startswith("Ev")
            assert event["channel_type"] == "im" and event["ts"] == event["event_ts"]
            await ws.send_json({"envelope_id": envelope_id})
            assert await fake.wait_ack(envelope_id) == {"envelope_id": envelope_id}
            assert fake.acks == [envelope_id]


# ---- Socket Mode, through slack-bolt ----


@asynccontextmanager
async def bolt_running(fake: FakeSlack, app: AsyncApp) -> AsyncIterator[AsyncSocketModeHandler]:
    # The handler's SocketModeClient calls apps.connections.open through app.client,
    # so the fake's base_url reaches it without a separate web_client.
    handler = AsyncSocketModeHandler(app, fake.app_token)
    await handler.connect_async()
    try:
        await asyncio.wait_for(fake.socket_connected.wait(), 5)
        yield handler
    finally:
        await handler.close_async()


def bolt_app(fake: FakeSlack, **kw: Any) -> AsyncApp:
    return AsyncApp(client=web_client(fake), **kw)


async def test_concurrent_sockets_are_counted(fake: FakeSlack) -> None:
    """Slack takes up to 10 Socket Mode connections per app; the fake notices how many."""
    async with bolt_running(fake, bolt_app(fake)):
        assert (fake.open_sockets, fake.peak_sockets) == (1, 1)
        async with bolt_running(fake, bolt_app(fake)):
            await fake.wait_for(lambda: fake.open_sockets == 2)
        await fake.wait_for(lambda: fake.open_sockets == 1)
    assert fake.peak_sockets == 2


async def test_bolt_receives_dm_and_acks(fake: FakeSlack) -> None:
    app = bolt_app(fake)
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        await got.put(event)

    async with bolt_running(fake, app):
        envelope_id = await fake.push_event(fake.dm_event("U1", "hello bot"))
        event = await asyncio.wait_for(got.get(), 5)
        assert (event["user"], event["text"], event["channel"]) == ("U1", "hello bot", "D1")
        await fake.wait_ack(envelope_id)
    # Bolt authorises the first request with auth.test against the same base_url.
    assert [c.method for c in fake.calls] == ["apps.connections.open", "auth.test"]


async def test_bolt_mention_replies_in_thread(fake: FakeSlack) -> None:
    app = bolt_app(fake)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text=f"you said: {event['text']}", thread_ts=event["ts"])

    async with bolt_running(fake, app):
        event = fake.mention_event("U1", "ping")
        await fake.push_event(event)
        await fake.wait_for(lambda: len(fake.channel_log("C1", thread_ts=event["ts"])) == 1)
    [reply] = fake.channel_log("C1", thread_ts=event["ts"])
    assert reply.thread_ts == event["ts"] and reply.text == f"you said: <@{BOT_USER_ID}> ping"


async def test_unacked_envelope_is_redelivered_with_retry_attempt(fake: FakeSlack) -> None:
    # process_before_response: bolt acks only after the listener returns, and not if it raises.
    app = bolt_app(fake, process_before_response=True)
    retry_nums: list[str] = []

    @app.event("message")
    async def on_message(request: Any) -> None:
        retry_nums.append(request.headers.get("x-slack-retry-num", ["?"])[0])
        if len(retry_nums) == 1:
            raise RuntimeError("first attempt crashes")

    fake.redeliver_unacked_after = 0.2
    async with bolt_running(fake, app):
        first_id = await fake.push_event(fake.dm_event("U1", "hi"))
        await fake.wait_for(lambda: len(fake.acks) == 1)
    [first, retry] = fake.envelopes
    assert fake.acks == [retry["envelope_id"]] and first["envelope_id"] == first_id
    assert (retry["retry_attempt"], retry["retry_reason"]) == (1, "timeout")
    assert retry["payload"]["event_id"] == first["payload"]["event_id"]
    assert retry_nums == ["0", "1"]


@pytest.mark.parametrize("how", ["server_close", "disconnect_message"])
async def test_bolt_reconnects(fake: FakeSlack, how: str) -> None:
    app = bolt_app(fake)
    got: asyncio.Queue[str] = asyncio.Queue()

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        await got.put(event["text"])

    async with bolt_running(fake, app):
        if how == "server_close":
            await fake.disconnect_socket()
        else:
            await fake.send_disconnect()
        await fake.wait_for(lambda: fake.socket_connections == 2 and fake.socket_connected.is_set())
        envelope_id = await fake.push_event(fake.dm_event("U1", "after reconnect"))
        assert await asyncio.wait_for(got.get(), 5) == "after reconnect"
        await fake.wait_ack(envelope_id)
    assert len(fake.calls_to("apps.connections.open")) == 2


# ---- signed HTTP Events API ----


@asynccontextmanager
async def signed_endpoint() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    verifier = SignatureVerifier(SECRET)
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401, text="bad signature")
        data = await request.json()
        if data["type"] == "url_verification":
            return web.Response(text=data["challenge"])
        received.append({"body": data, "retry": request.headers.get("X-Slack-Retry-Num")})
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", received
    finally:
        await runner.cleanup()


async def test_signed_http_events(fake: FakeSlack) -> None:
    async with signed_endpoint() as (url, received):
        event = fake.dm_event("U1", "over http")
        good = await fake.post_http_event(url, event, signing_secret=SECRET, retry_attempt=1)
        assert good.status == 200
        assert received[0]["body"]["event"] == event and received[0]["retry"] == "1"

        bad = await fake.post_http_event(url, event, signing_secret=SECRET, bad_signature=True)
        stale = await fake.post_http_event(
            url, event, signing_secret=SECRET, timestamp=int(time.time()) - 600
        )
        assert (bad.status, stale.status, len(received)) == (401, 401, 1)

        challenge = await fake.post_url_verification(url, signing_secret=SECRET, challenge="c-42")
        assert (challenge.status, challenge.body) == (200, "c-42")
