"""The fake Discord against the real discord.py 2.7 Client: login, gateway, REST, limits, faults."""

from __future__ import annotations

import asyncio
import io
import json
import math
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.fakes.fake_discord import FakeDiscord

with warnings.catch_warnings():
    # discord.py imports the deprecated `audioop` (voice) module; pytest runs with -W error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    import discord.http

GUILD, CHAN, OTHER, DM, ALICE = 10, 20, 21, 30, 3000
TIMEOUT = 5.0


class Bot(discord.Client):
    """A real discord.Client that queues every message not written by itself."""

    def __init__(self, *, message_content: bool = True, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        # guild_ready_timeout: discord.py waits this long after the last GUILD_CREATE.
        super().__init__(intents=intents, guild_ready_timeout=0.05, **options)
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass  # the default sleeps 5 s before every re-IDENTIFY

    async def on_message(self, message: discord.Message) -> None:
        assert self.user is not None
        if message.author.id != self.user.id:
            self.inbox.put_nowait(message)

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with _world(FakeDiscord()) as f:
        yield f


@asynccontextmanager
async def _world(fake: FakeDiscord) -> AsyncIterator[FakeDiscord]:
    async with fake:
        fake.add_guild(GUILD, "guild", channels=[(CHAN, "general"), (OTHER, "secret")])
        fake.add_dm(DM, ALICE, "alice")
        with fake.patch_discord():
            yield fake


@asynccontextmanager
async def running(
    fake: FakeDiscord, *, expect_crash: bool = False, **options: Any
) -> AsyncIterator[tuple[Bot, asyncio.Task[None]]]:
    """Log in, connect (reconnect=False) and wait for READY; close the client on exit.

    Unless `expect_crash`, connect() must end cleanly after close().
    """
    bot = Bot(**options)
    try:
        await bot.login(fake.token)
    except BaseException:
        await bot.close()
        raise
    task = asyncio.create_task(bot.connect(reconnect=False))
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # surfaces why connect() died
        assert bot.is_ready(), "client never became ready"
        yield bot, task
    finally:
        ready.cancel()
        await bot.close()
        await asyncio.wait({task}, timeout=TIMEOUT)
        error = task.exception() if task.done() and not task.cancelled() else None
    assert task.done(), "connect() did not return after close()"
    if error is not None and not expect_crash:
        raise error


def _channel(bot: Bot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


# -- login and gateway -----------------------------------------------------------------------


async def test_login_identify_ready_and_guild_cache(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        assert bot.user is not None and bot.user.id == 1000 and bot.user.name == "picobot"
        assert bot.application_id == 2000
        assert fake.identify_payload is not None
        assert fake.identify_payload["token"] == fake.token
        assert fake.identify_payload["intents"] == bot.intents.value
        guild = bot.get_guild(GUILD)
        assert guild is not None and guild.name == "guild"
        assert _channel(bot, CHAN).name == "general"
        assert guild.me is not None and guild.me.id == 1000
        path, query = fake.gateway_connections[0]
        assert path == "/gateway" and query["v"] == "10" and query["encoding"] == "json"
        # discord.py always asks for zlib-stream but reads TEXT frames uncompressed.
        assert query["compress"] == "zlib-stream"
    routes = [c.route for c in fake.calls]
    assert routes[:2] == ["get_me", "get_application"]


async def test_concurrent_sessions_are_counted(fake: FakeDiscord) -> None:
    """Discord lets a bot run several gateway sessions at once; the fake notices."""
    async with running(fake):
        assert (fake.live_sessions, fake.peak_sessions) == (1, 1)
        async with running(fake):
            assert (fake.live_sessions, fake.peak_sessions) == (2, 2)
        await fake.wait_for(lambda: fake.live_sessions == 1)
    await fake.wait_for(lambda: fake.live_sessions == 0)
    assert fake.peak_sessions == 2


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    bot = Bot()
    try:
        with pytest.raises(discord.LoginFailure):
            await bot.login("WRONG")
    finally:
        await bot.close()
    assert fake.calls[-1].status == 401


async def test_patch_discord_restores_urls() -> None:
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        with fake.patch_discord():
            assert discord.http.Route.BASE == f"{fake.http_url}/api/v10"
            assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
    assert discord.http.Route.BASE == base
    assert discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY == gateway


async def test_heartbeats_are_acknowledged() -> None:
    async with _world(FakeDiscord(heartbeat_interval_ms=50)) as fake, running(fake) as (bot, _):
        await fake.wait_for(lambda: fake.heartbeats >= 3)
        # A message after the ACKs proves the client has processed them (frames are in order).
        await fake.user_message(DM, "ping")
        assert (await bot.next_message()).content == "ping"
        assert math.isfinite(bot.latency)


async def test_zlib_stream_frames() -> None:
    async with _world(FakeDiscord(zlib_stream=True)) as fake, running(fake) as (bot, _):
        await fake.user_message(CHAN, "compressed hello")
        assert (await bot.next_message()).content == "compressed hello"


# -- inbound messages ------------------------------------------------------------------------


async def test_guild_message_with_mention(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        payload = await fake.user_message(CHAN, "hello", mentions_bot=True)
        msg = await bot.next_message()
        assert msg.id == int(payload["id"])
        assert msg.content == "<@1000> hello"
        assert msg.guild is not None and msg.guild.id == GUILD
        assert msg.channel.id == CHAN and isinstance(msg.channel, discord.TextChannel)
        assert msg.author.id == ALICE and msg.author.name == "alice"
        assert bot.user is not None and bot.user.mentioned_in(msg)
        assert [u.id for u in msg.mentions] == [1000]


async def test_dm_message_and_reply(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        await fake.user_message(DM, "hi there")
        msg = await bot.next_message()
        assert isinstance(msg.channel, discord.DMChannel)
        assert msg.guild is None and msg.content == "hi there" and msg.mentions == []
        await msg.channel.send("pong")
        assert [m.content for m in fake.channel_log(DM)] == ["pong"]
        # A DM channel the fake never heard of is created on the fly.
        await fake.user_message(31, "new dm", author_id=4000, username="bob")
        msg = await bot.next_message()
        assert isinstance(msg.channel, discord.DMChannel) and msg.author.name == "bob"


async def test_user_reply_references_bot_message(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        sent = await _channel(bot, CHAN).send("question?")
        await fake.user_message(CHAN, "answer", reference_message_id=sent.id)
        msg = await bot.next_message()
        assert msg.type is discord.MessageType.reply
        assert msg.reference is not None and msg.reference.message_id == sent.id
        assert isinstance(msg.reference.resolved, discord.Message)
        assert msg.reference.resolved.content == "question?"


async def test_without_message_content_intent_guild_text_is_blank(fake: FakeDiscord) -> None:
    async with running(fake, message_content=False) as (bot, _):
        await fake.user_message(CHAN, "secret words")
        assert (await bot.next_message()).content == ""
        await fake.user_message(CHAN, "hey", mentions_bot=True)
        assert (await bot.next_message()).content == "<@1000> hey"
        await fake.user_message(DM, "dm text")
        assert (await bot.next_message()).content == "dm text"


# -- outbound REST ---------------------------------------------------------------------------


async def test_send_edit_delete_and_gateway_echo(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        echoed = asyncio.create_task(bot.wait_for("message", check=lambda m: m.content == "one"))
        sent = await _channel(bot, CHAN).send(
            "one", allowed_mentions=discord.AllowedMentions.none()
        )
        assert (await asyncio.wait_for(echoed, TIMEOUT)).id == sent.id  # Discord echoes own msgs
        [logged] = fake.channel_log(CHAN)
        assert (logged.message_id, logged.content, logged.author_id) == (sent.id, "one", 1000)
        assert logged.allowed_mentions == {"parse": []}

        edited = await sent.edit(content="two")
        assert edited.content == "two" and edited.edited_at is not None
        assert (logged.content, logged.edits, logged.history) == ("two", 1, ["one", "two"])

        deleted = asyncio.create_task(bot.wait_for("raw_message_delete"))
        await sent.delete()
        assert (await asyncio.wait_for(deleted, TIMEOUT)).message_id == sent.id
        assert fake.channel_log(CHAN) == [] and logged.deleted
        with pytest.raises(discord.NotFound) as info:
            await sent.edit(content="three")
        assert info.value.code == 10008


async def test_content_over_2000_is_400(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        channel = _channel(bot, CHAN)
        with pytest.raises(discord.HTTPException) as info:
            await channel.send("x" * 2001)
        assert info.value.status == 400 and info.value.code == 50035
        assert "2000 or fewer" in str(info.value)
        await channel.send("x" * 2000)
        assert [len(m.content) for m in fake.channel_log(CHAN)] == [2000]


async def test_unknown_and_forbidden_channels(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        with pytest.raises(discord.NotFound) as not_found:
            await bot.get_partial_messageable(999).send("hello?")
        assert not_found.value.code == 10003
        fake.forbid(OTHER)
        with pytest.raises(discord.Forbidden) as forbidden:
            await _channel(bot, OTHER).send("let me in")
        assert forbidden.value.code == 50013
        assert fake.channel_log(OTHER) == []


async def test_file_upload_is_parsed_from_multipart(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        upload = discord.File(io.BytesIO(b"report body"), filename="report.txt")
        sent = await _channel(bot, CHAN).send("see attached", file=upload)
        [logged] = fake.channel_log(CHAN)
        assert (logged.content, logged.attachments) == ("see attached", ["report.txt"])
        assert [a.filename for a in sent.attachments] == ["report.txt"]


async def test_typing(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        await _channel(bot, CHAN).typing()
        assert fake.typing == [CHAN]


async def test_user_send_creates_dm(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        user = await bot.fetch_user(ALICE)
        await user.send("direct")
        assert [m.content for m in fake.channel_log(DM)] == ["direct"]
        assert "create_dm" in [c.route for c in fake.calls]


# -- rate limits and faults ------------------------------------------------------------------


def _sends(fake: FakeDiscord, channel_id: int) -> list[int]:
    return [c.status for c in fake.calls if c.path == f"/channels/{channel_id}/messages"]


async def test_429_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        fake.force_429(CHAN, 0.2)
        await _channel(bot, CHAN).send("after a wait")
        assert _sends(fake, CHAN) == [429, 200]
        assert len(fake.rate_limited) == 1
        assert [m.content for m in fake.channel_log(CHAN)] == ["after a wait"]


async def test_long_429_raises_rate_limited(fake: FakeDiscord) -> None:
    # discord.py clamps max_ratelimit_timeout to at least 30 s.
    async with running(fake, max_ratelimit_timeout=30.0) as (bot, _):
        fake.force_429(CHAN, 60.0)
        with pytest.raises(discord.RateLimited) as info:
            await _channel(bot, CHAN).send("never")
        assert info.value.retry_after == pytest.approx(60.0)
        assert fake.channel_log(CHAN) == []


async def test_discord_py_paces_itself_from_bucket_headers(fake: FakeDiscord) -> None:
    fake.limits["message_create"] = (2, 0.5)
    async with running(fake) as (bot, _):
        for text in ("a", "b", "c"):
            await _channel(bot, CHAN).send(text)
        sends = [c for c in fake.calls if c.route == "message_create"]
        assert [c.status for c in sends] == [200, 200, 200] and fake.rate_limited == []
        assert sends[2].at - sends[0].at >= 0.4  # it waited for X-RateLimit-Reset-After


async def test_500_is_retried_and_drop_is_raised(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        channel = _channel(bot, CHAN)
        fake.fail_next("message_create", "500")
        await channel.send("survived a 500")  # discord.py retries 5xx after 1 s
        assert _sends(fake, CHAN) == [500, 200]
        fake.fail_next(f"POST /channels/{CHAN}/messages", "drop")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await channel.send("lost")
        assert _sends(fake, CHAN) == [500, 200, 0]
        assert [m.content for m in fake.channel_log(CHAN)] == ["survived a 500"]


async def test_lost_response_posts_but_raises(fake: FakeDiscord) -> None:
    """The ambiguous case: the client sees an error although the message was delivered."""
    async with running(fake) as (bot, _):
        fake.fail_next("message_create", "lost_response")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _channel(bot, CHAN).send("delivered anyway")
        assert [m.content for m in fake.channel_log(CHAN)] == ["delivered anyway"]
        assert [(c.status, c.answered) for c in fake.calls if c.route == "message_create"] == [
            (200, False)
        ]


async def test_limiter_headers_and_429_shape_with_injected_clock() -> None:
    now = [100.0]
    async with FakeDiscord(clock=lambda: now[0]) as fake, aiohttp.ClientSession() as http:
        fake.add_guild(GUILD, "guild", channels=[(CHAN, "general"), (OTHER, "secret")])
        auth = {"Authorization": f"Bot {fake.token}"}

        async def post(cid: int) -> aiohttp.ClientResponse:
            url = f"{fake.http_url}/api/v10/channels/{cid}/messages"
            async with http.post(url, json={"content": "x"}, headers=auth) as resp:
                await resp.read()
                return resp

        remaining = [(await post(CHAN)).headers["X-RateLimit-Remaining"] for _ in range(5)]
        assert remaining == ["4", "3", "2", "1", "0"]
        limited = await post(CHAN)
        assert limited.status == 429 and limited.headers["Via"] == "1.1 google"
        assert limited.headers["X-RateLimit-Scope"] == "user"
        assert limited.headers["Retry-After"] == "5"
        body = json.loads(await limited.text())
        assert body == {
            "message": "You are being rate limited.",
            "retry_after": 5.0,
            "global": False,
        }
        assert (await post(OTHER)).status == 200  # buckets are per channel
        now[0] += 5.0
        assert (await post(CHAN)).status == 200
        assert [c.status for c in fake.rate_limited] == [429]
        async with http.get(f"{fake.http_url}/api/v10/users/@me") as resp:
            assert resp.status == 401


async def test_global_limit() -> None:
    async with FakeDiscord(clock=lambda: 0.0) as fake, aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {fake.token}"}
        statuses = []
        for _ in range(51):
            async with http.get(f"{fake.http_url}/api/v10/users/@me", headers=auth) as resp:
                statuses.append(resp.status)
                body = await resp.json()
        assert statuses == [200] * 50 + [429]
        assert body["global"] is True and resp.headers["X-RateLimit-Global"] == "true"


# -- robustness ------------------------------------------------------------------------------


async def test_unknown_or_malformed_dispatch_keeps_client_alive(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, task):
        await fake.dispatch("SOMETHING_NEW", {"whatever": 1})  # unknown event: ignored
        await fake.send_raw('{"op": 42, "d": null}')  # unknown opcode: logged, ignored
        await fake.dispatch("MESSAGE_DELETE", {"id": "5", "channel_id": "404"})  # unknown ids
        await fake.user_message(CHAN, "still here")
        assert (await bot.next_message()).content == "still here"
        assert not task.done()


async def test_non_json_frame_kills_connect(fake: FakeDiscord) -> None:
    """discord.py does not guard json.loads: connect() dies, so adapters must supervise it."""
    async with running(fake, expect_crash=True) as (_, task):
        await fake.send_raw("not json")
        await asyncio.wait({task}, timeout=TIMEOUT)
        assert isinstance(task.exception(), ValueError)


@pytest.mark.parametrize("event", ["MESSAGE_CREATE", "TYPING_START"])
async def test_known_event_missing_fields_kills_connect(fake: FakeDiscord, event: str) -> None:
    """A parser's KeyError escapes Client.connect() too (it only catches network errors)."""
    async with running(fake, expect_crash=True) as (_, task):
        await fake.dispatch(event, {"channel_id": str(CHAN)})
        await asyncio.wait({task}, timeout=TIMEOUT)
        assert isinstance(task.exception(), KeyError)


async def test_drop_gateway_resumes_and_replays(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, task):
        resumed = asyncio.create_task(bot.wait_for("resumed"))
        fake.drop_gateway()
        await fake.user_message(CHAN, "sent while away")  # queued, replayed on RESUME
        await asyncio.wait_for(resumed, TIMEOUT)
        assert (await bot.next_message()).content == "sent while away"
        assert len(fake.resumes) == 1 and fake.resumes[0]["seq"] >= 1
        assert fake.gateway_connections[-1][0] == "/resume-gateway"
        identifies = [f for f in fake.gateway_received if f["op"] == 2]
        assert len(identifies) == 1 and not task.done()


async def test_stale_session_is_invalidated_and_reidentified(fake: FakeDiscord) -> None:
    async with running(fake) as (bot, _):
        fake.session_id = "expired"  # the RESUME will be refused with op 9
        ready_again = asyncio.create_task(bot.wait_for("ready"))
        fake.drop_gateway()
        await asyncio.wait_for(ready_again, TIMEOUT)  # a second READY: a new session
        assert fake.session_id != "expired" and fake.resumes == []
        assert [f["op"] for f in fake.gateway_received if f["op"] in (2, 6)] == [2, 6, 2]
        # discord.py re-IDENTIFYs on the URL it last used, not on DEFAULT_GATEWAY.
        paths = [p for p, _ in fake.gateway_connections]
        assert paths == ["/gateway", "/resume-gateway", "/resume-gateway"]
        await fake.user_message(CHAN, "fresh session")
        assert (await bot.next_message()).content == "fresh session"


async def test_wait_for_times_out_with_context(fake: FakeDiscord) -> None:
    with pytest.raises(TimeoutError, match="condition not met"):
        await fake.wait_for(lambda: False, timeout=0.05)
