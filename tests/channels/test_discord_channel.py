"""DiscordChannel with the real core (Daemon) and real discord.py against FakeDiscord."""

from __future__ import annotations

import gc
import logging
import re
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from channels.discord_channel import DiscordChannel
from channels.discord_errors import translate_errors
from picobot.agent.demo import DemoLLM
from picobot.agent.llm import LLM
from picobot.config import parse_config
from picobot.core.channel import State
from picobot.core.errors import (
    BadRequest,
    ChannelTimeout,
    ChatNotFound,
    Forbidden,
    MessageTooLong,
    RateLimited,
)
from picobot.core.messages import InboundMessage
from picobot.runtime.daemon import Daemon
from picobot.text.render import render
from tests.fakes.discord_gateway import FakeChannel
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.paced_llm import PacedLLM

with warnings.catch_warnings():
    # discord.py imports the deprecated `audioop` (voice) module; pytest runs with -W error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

GUILD, CHAN, OTHER, THREAD, DM, ALICE, BOT = 10, 20, 21, 22, 30, 3000, 1000
PLACEHOLDER = "Thinking…"


@pytest.fixture(autouse=True)
def fast_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DiscordChannel, "guild_ready_timeout", 0.05)
    monkeypatch.setattr(DiscordChannel, "identify_delay", 0.0)
    monkeypatch.setattr(DiscordChannel, "reconnect_delay", 0.05)
    monkeypatch.setattr(DiscordChannel, "ready_timeout", 5.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_id=BOT) as fake:
        fake.add_guild(GUILD, "guild", channels=[(CHAN, "general"), (OTHER, "other")])
        fake.add_dm(DM, ALICE, "alice")
        with fake.patch_discord():
            yield fake


@asynccontextmanager
async def running(
    fake: FakeDiscord,
    tmp_path: Path,
    llm: LLM | None = None,
    *,
    drain_timeout: float = 2.0,
    token: str | None = None,
    **discord_options: Any,
) -> AsyncIterator[tuple[Daemon, DiscordChannel, list[InboundMessage]]]:
    """A Daemon with only Discord enabled; yields it, the channel and every inbound message."""
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"port": 0},
            "dispatch": {"drain_timeout": drain_timeout},
            "channels": {
                "web": {"enabled": False},
                "discord": {
                    "enabled": True,
                    "token": token or fake.token,
                    "allow_from": ["*"],
                    **discord_options,
                },
            },
        },
        env={},
    )
    async with Daemon(config, llm=llm or DemoLLM(delay=0)) as daemon:
        channel = daemon.channels["discord"]
        assert isinstance(channel, DiscordChannel)
        seen: list[InboundMessage] = []
        sink = channel.sink

        async def record(msg: InboundMessage) -> None:
            seen.append(msg)
            await sink(msg)

        channel.sink = record
        yield daemon, channel, seen


def answered(fake: FakeDiscord, channel_id: int, marker: str = "You said") -> bool:
    return any(marker in m.content for m in fake.channel_log(channel_id))


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def identifies(fake: FakeDiscord) -> int:
    return sum(1 for frame in fake.gateway_received if frame["op"] == 2)


# -- conversations ---------------------------------------------------------------------------


async def test_dm_reply_edits_the_placeholder(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as (_, _, seen):
        payload = await fake.user_message(DM, "hello bot")
        await fake.wait_for(lambda: answered(fake, DM))
        assert DM in fake.typing
    [reply] = fake.channel_log(DM)  # after shutdown: nothing more was sent or removed
    assert reply.history[0] == PLACEHOLDER and reply.edits == 1
    assert "> hello bot" in reply.content and reply.message_reference is None
    assert not [c for c in fake.calls if c.route == "message_delete"]
    [msg] = seen
    assert msg.id == f"discord:{payload['id']}" and msg.message_id == payload["id"]
    assert (msg.chat_id, msg.is_group, msg.thread, msg.sender.id) == (str(DM), False, None, "3000")


async def test_guild_answers_only_mentions_in_that_channel(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as (_, _, seen):
        await fake.user_message(CHAN, "talking among ourselves")
        await fake.user_message(CHAN, "are you there?", mentions_bot=True)
        await fake.wait_for(lambda: answered(fake, CHAN))
        [reply] = fake.channel_log(CHAN)
        # A reply to the bot's message counts as addressing it.
        await fake.user_message(CHAN, "and again", reference_message_id=reply.message_id)
        await fake.wait_for(lambda: answered(fake, CHAN, "> and again"))
    first, second = fake.channel_log(CHAN)
    assert "> are you there?" in first.content and "<@" not in first.content
    assert "talking" not in first.content + second.content
    assert fake.channel_log(OTHER) == [] and fake.channel_log(DM) == []
    assert [(m.text, m.mentioned, m.is_group) for m in seen] == [
        ("talking among ourselves", False, True),
        ("are you there?", True, True),
        ("and again", True, True),
    ]


async def test_guild_and_channel_filters(fake: FakeDiscord, tmp_path: Path) -> None:
    options = {"allow_guilds": [str(GUILD)], "allow_channels": [str(OTHER)]}
    async with running(fake, tmp_path, **options) as (_, _, seen):
        await fake.user_message(CHAN, "filtered out", mentions_bot=True)
        await fake.user_message(OTHER, "let in", mentions_bot=True)
        await fake.user_message(DM, "dms are not filtered")
        await fake.wait_for(lambda: answered(fake, OTHER) and answered(fake, DM))
    assert fake.channel_log(CHAN) == []
    assert [m.text for m in seen] == ["let in", "dms are not filtered"]


async def test_thread_is_its_own_session(fake: FakeDiscord, tmp_path: Path) -> None:
    fake.channels[THREAD] = FakeChannel(THREAD, "topic", guild_id=GUILD)
    async with running(fake, tmp_path, allow_channels=[str(CHAN)]) as (_, _, seen):
        await fake.dispatch("THREAD_CREATE", _thread_payload())
        await fake.user_message(THREAD, "in the thread", mentions_bot=True)
        await fake.wait_for(lambda: answered(fake, THREAD))
    assert fake.channel_log(CHAN) == []  # the thread's parent is allowed; replies stay inside
    [msg] = seen
    assert (msg.chat_id, msg.thread) == (str(THREAD), str(THREAD))
    assert msg.session_key == f"discord:{THREAD}:{THREAD}"


def _thread_payload() -> dict[str, Any]:
    metadata = {
        "archived": False,
        "auto_archive_duration": 1440,
        "archive_timestamp": "2025-01-01T00:00:00+00:00",
        "locked": False,
    }
    return {
        "id": str(THREAD),
        "guild_id": str(GUILD),
        "parent_id": str(CHAN),
        "owner_id": str(ALICE),
        "name": "topic",
        "type": 11,  # public thread
        "message_count": 0,
        "member_count": 1,
        "thread_metadata": metadata,
        "newly_created": True,
    }


async def test_long_reply_is_split_fence_safe(fake: FakeDiscord, tmp_path: Path) -> None:
    prose = "Some prose with an emoji 🙂 in it. " * 45
    code = "\n".join(f"print('line {i:03d} 🐍')" for i in range(110))
    text = f"{prose}\n\n```python\n{code}\n```\n\n{'The end is near. ' * 70}FIN"
    assert 4900 < utf16_len(text) < 5500
    async with running(fake, tmp_path, PacedLLM(text)):
        await fake.user_message(DM, "write a lot")
        await fake.wait_for(lambda: answered(fake, DM, "FIN"))
    messages = fake.channel_log(DM)
    assert len(messages) >= 3 and messages[0].history[0] == PLACEHOLDER
    printed = []
    for m in messages:
        assert utf16_len(m.content) <= 2000
        in_fence = False
        for line in m.content.splitlines():
            if line.startswith("```"):
                in_fence = not in_fence
            elif line.startswith("print("):
                assert in_fence, "a code line outside its fence"
                printed.append(line)
        assert not in_fence, "a message ends inside a code block"
    assert printed == code.splitlines()

    def words(s: str) -> list[str]:
        return re.sub(r"```\w*", " ", s).split()

    assert words(" ".join(m.content for m in messages)) == words(text)


async def test_429_on_one_channel_does_not_delay_another(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.force_429(CHAN, 40.0, route="message_create")
    caplog.set_level(logging.INFO, logger="picobot.dispatch")
    async with running(fake, tmp_path, drain_timeout=0.2):
        await fake.user_message(CHAN, "first", mentions_bot=True)
        await fake.wait_for(lambda: len(fake.rate_limited) == 1)
        await fake.user_message(OTHER, "second", mentions_bot=True)
        await fake.wait_for(lambda: answered(fake, OTHER))
        assert fake.channel_log(CHAN) == []  # A still waits out its 40 s
    assert fake.rate_limited[0].path == f"/channels/{CHAN}/messages"
    # discord.py did not sleep 40 s itself: it raised, and the core's lane holds the wait.
    assert "retrying in 40.0 s" in caplog.text


async def test_everyone_in_model_output_pings_nobody(fake: FakeDiscord, tmp_path: Path) -> None:
    llm = PacedLLM(f"@everyone @here look, <@{ALICE}> and <@&{GUILD}>!")
    async with running(fake, tmp_path, llm):
        await fake.user_message(CHAN, "ping them", mentions_bot=True)
        await fake.wait_for(lambda: answered(fake, CHAN, "@everyone"))
    [reply] = fake.channel_log(CHAN)
    # Not parsed from the text: no @everyone/@here, no roles, no users (no explicit lists).
    assert reply.allowed_mentions == {"parse": []}
    assert "@everyone @here" in reply.content  # the text itself is not mangled


# -- robustness ------------------------------------------------------------------------------


async def test_malformed_dispatches_are_survived(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as (_, channel, _):
        # A dispatch discord.py's parser chokes on is dropped; the session goes on.
        await fake.dispatch("MESSAGE_CREATE", {"channel_id": str(CHAN)})
        await fake.user_message(DM, "still there?")
        await fake.wait_for(lambda: answered(fake, DM, "still there?"))
        assert identifies(fake) == 1 and channel.state is State.CONNECTED

        # A frame that is not JSON ends connect(); the adapter connects again.
        session = fake.session_id
        await fake.send_raw("not json")
        await fake.wait_for(lambda: fake.session_id != session)
        await fake.user_message(DM, "and now?")
        await fake.wait_for(lambda: answered(fake, DM, "and now?"))
        assert identifies(fake) == 2


async def test_connected_state_is_in_readyz(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as (daemon, channel, _):
        assert channel.state is State.CONNECTED
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.port}/readyz") as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["channels"] == {"discord": "connected"}
        # A lost gateway is visible until discord.py has resumed.
        states: list[State] = []
        set_state = channel.set_state
        channel.set_state = lambda state, detail="": (
            states.append(state),
            set_state(state, detail),
        )  # type: ignore[method-assign]
        fake.drop_gateway()
        await fake.user_message(DM, "back?")  # replayed after the RESUME
        await fake.wait_for(lambda: answered(fake, DM))
        assert len(fake.resumes) == 1 and states == [State.DISCONNECTED, State.CONNECTED]
        assert channel.state is State.CONNECTED


async def test_events_after_close_are_dropped(fake: FakeDiscord, tmp_path: Path) -> None:
    """An event discord.py dispatched after close() (READY's delay running out, connect()
    seeing the socket close) raised AttributeError, as close() unsets the client's loop, and
    left its handler's coroutine never awaited: a warning in whichever test ran next."""
    async with running(fake, tmp_path) as (_, channel, _):
        client = channel._client
        assert client is not None
    assert client.is_closed()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.dispatch("ready")
        client.dispatch("disconnect")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_rejected_token_fails_clearly(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running(fake, tmp_path, token="WRONG.TOKEN") as (daemon, channel, _):
        assert channel.state is State.FAILED
        assert "discord token rejected" in channel.state_detail
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.port}/readyz") as resp,
        ):
            assert resp.status == 503
    # Shutdown called stop() after the failed start: no unclosed session (warnings are errors).
    assert channel.state is State.STOPPED


# -- the outbound calls, directly ------------------------------------------------------------


async def test_send_edit_delete_typing(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as (_, channel, _):
        question = await fake.user_message(CHAN, "a question")
        sent = await channel.send(
            str(CHAN), render("**hi** @everyone", "discord"), reply_to=question["id"]
        )
        [msg] = fake.channel_log(CHAN)
        assert str(msg.message_id) == sent and msg.content == "**hi** @everyone"
        assert msg.message_reference is not None
        assert str(msg.message_reference["message_id"]) == question["id"]
        assert msg.message_reference.get("fail_if_not_exists") is False
        # Nobody is pinged; replied_user is absent, which Discord reads as false.
        assert msg.allowed_mentions == {"parse": []}

        await channel.edit(str(CHAN), sent, render("edited", "discord"))
        await channel.edit(str(CHAN), sent, render("edited", "discord"))  # same text: fine
        assert (msg.content, msg.edits, msg.allowed_mentions["parse"]) == ("edited", 2, [])

        await channel.typing(str(CHAN))
        assert fake.typing == [CHAN]

        await channel.delete(str(CHAN), sent)
        assert msg.deleted
        with pytest.raises(BadRequest):
            await channel.edit(str(CHAN), sent, render("gone", "discord"))


async def test_platform_errors_are_translated(fake: FakeDiscord, tmp_path: Path) -> None:
    hello = render("hello", "discord")
    async with running(fake, tmp_path) as (_, channel, _):
        with pytest.raises(ChatNotFound):
            await channel.send("999", hello)
        fake.forbid(OTHER)
        with pytest.raises(Forbidden):
            await channel.send(str(OTHER), hello)
        with pytest.raises(MessageTooLong):
            await channel.send(str(CHAN), render("x" * 2001, "discord"))
        fake.force_429(CHAN, 45.0)
        with pytest.raises(RateLimited) as limited:
            await channel.send(str(CHAN), hello)
        assert limited.value.retry_after == pytest.approx(45.0)
        fake.fail_next("message_create", "drop")
        with pytest.raises(ChannelTimeout):
            await channel.send(str(CHAN), hello)
    assert fake.channel_log(CHAN) == []


# -- translate_errors, unit -----------------------------------------------------------------


def _http_error(
    cls: type[discord.HTTPException], status: int, code: int = 0, errors: Any = None, **headers: str
) -> discord.HTTPException:
    response = SimpleNamespace(status=status, reason="Reason", headers=headers)
    body: dict[str, Any] = {"code": code, "message": "failed"}
    if errors is not None:
        body["errors"] = errors
    return cls(response, body)  # type: ignore[arg-type]


TOO_LONG = {
    "content": {
        "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]
    }
}
BAD_REFERENCE = {"message_reference": {"_errors": [{"code": "X", "message": "Unknown message"}]}}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (discord.RateLimited(42.0), RateLimited),
        (_http_error(discord.HTTPException, 429, **{"Retry-After": "7"}), RateLimited),
        (_http_error(discord.Forbidden, 403, 50013), Forbidden),
        (_http_error(discord.NotFound, 404, 10003), ChatNotFound),
        (_http_error(discord.NotFound, 404, 10008), BadRequest),
        (_http_error(discord.HTTPException, 400, 50035, TOO_LONG), MessageTooLong),
        (_http_error(discord.HTTPException, 400, 50035, BAD_REFERENCE), BadRequest),
        (_http_error(discord.HTTPException, 400, 50006), BadRequest),
        (_http_error(discord.DiscordServerError, 503), ChannelTimeout),
        (aiohttp.ServerDisconnectedError(), ChannelTimeout),
        (TimeoutError(), ChannelTimeout),
        (ConnectionResetError(), ChannelTimeout),
    ],
)
def testtranslate_errors(exc: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info, translate_errors():
        raise exc
    assert type(info.value) is expected and info.value.__cause__ is exc


def testtranslate_errors_keeps_retry_after() -> None:
    with pytest.raises(RateLimited) as info, translate_errors():
        raise discord.RateLimited(42.0)
    assert info.value.retry_after == 42.0
    with pytest.raises(RateLimited) as info, translate_errors():
        raise _http_error(discord.HTTPException, 429, **{"Retry-After": "7"})
    assert info.value.retry_after == 7.0


def test_unknown_timing_option_is_refused() -> None:
    with pytest.raises(TypeError, match="ready_timeot"):
        DiscordChannel(None, _never, ready_timeot=1.0)  # type: ignore[arg-type]


async def _never(msg: InboundMessage) -> None:
    raise AssertionError("no message expected")


async def test_streaming_grows_one_message_by_edits(fake: FakeDiscord, tmp_path: Path) -> None:
    reply = "Streaming on Discord: " + " ".join(f"w{i}" for i in range(40)) + " **end**"
    llm = PacedLLM(reply, duration=1.5, pieces=30)
    async with running(fake, tmp_path, llm, streaming={"flush_interval": 0.2}):
        await fake.user_message(DM, "stream it")
        await fake.wait_for(lambda: answered(fake, DM, "**end**"), timeout=15)
    [message] = fake.channel_log(DM)  # the placeholder, edited all the way
    assert message.content == reply  # Discord renders the Markdown itself
    partials = message.history[1:-1]  # between "Thinking…" and the final text
    assert len(partials) >= 2 and all(reply.startswith(p) for p in partials)
    assert fake.rate_limited == []
