"""The Telegram adapter: real python-telegram-bot against FakeTelegram, wired by the real Daemon."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram import error as tg

from channels.telegram_channel import CAPABILITIES, COMMANDS, TelegramChannel
from channels.telegram_errors import retry_after_seconds, translate_errors
from channels.telegram_updates import BotIdentity, addressed, to_inbound
from picobot.agent.demo import DemoLLM
from picobot.agent.llm import Finish, LLMEvent, Message, TextDelta
from picobot.config import Config, TelegramConfig, parse_config
from picobot.core import errors
from picobot.core.channel import Rate, State
from picobot.core.messages import InboundMessage
from picobot.runtime.daemon import Daemon
from picobot.text.render import Rendered, render
from tests.fakes.fake_telegram import FakeTelegram, ManualClock
from tests.fakes.telegram_rules import ApiError

BOT = "picobot_test_bot"
BOT_ID = 123  # FakeTelegram's default token is "123:TEST"
GROUP = -1001234567890
MENTION = [{"type": "mention", "offset": 0, "length": len(BOT) + 1}]


class ScriptedLLM:
    """Answers with `reply(text)`; records each call's user text and history length."""

    name = "scripted"

    def __init__(self, reply: Callable[[str], str] = lambda said: f"You said: {said}") -> None:
        self.reply = reply
        self.calls: list[str] = []
        self.history: list[int] = []  # messages before the user's, system prompt included

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncIterator[LLMEvent]:
        said = str(messages[-1]["content"])
        self.calls.append(said)
        self.history.append(len(messages) - 1)
        yield TextDelta(self.reply(said))
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_username=BOT) as server:
        yield server


def make_config(fake: FakeTelegram, tmp_path: Path, *, port: int = 0, **telegram: Any) -> Config:
    data = fake.picobot_config(tmp_path, **telegram)
    data["http"]["port"] = port
    # Short: tests that leave a chat in a flood wait must not wait for it on exit.
    return parse_config({**data, "dispatch": {"drain_timeout": 1.0}}, env={})


def answered(chat_id: int, needle: str = "You said") -> Callable[[FakeTelegram], bool]:
    def check(fake: FakeTelegram) -> bool:
        return any(needle in m.text for m in fake.chat_log(chat_id))

    check.__name__ = f"answered({chat_id}, {needle!r})"
    return check


def calls_to(fake: FakeTelegram, chat_id: int, method: str = "sendMessage") -> list[Any]:
    return [c for c in fake.calls if c.method == method and c.params.get("chat_id") == chat_id]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StateLog:
    """Records a channel's `set_state` calls, and waits for one."""

    def __init__(self, channel: Any) -> None:
        self.states: list[tuple[State, str]] = []
        self._changed = asyncio.Event()
        original = channel.set_state

        def set_state(state: State, detail: str = "") -> None:
            original(state, detail)
            self.states.append((state, detail))
            self._changed.set()

        channel.set_state = set_state

    async def wait_for(self, state: State, timeout: float = 5.0) -> str:
        """The detail of the first change to `state`."""
        async with asyncio.timeout(timeout):
            while not (details := [d for s, d in self.states if s is state]):
                self._changed.clear()
                await self._changed.wait()
        return details[0]


# -- private chats --------------------------------------------------------------------------


async def test_private_reply_edits_the_placeholder(fake: FakeTelegram, tmp_path: Path) -> None:
    async with Daemon(make_config(fake, tmp_path), llm=DemoLLM(delay=0)) as daemon:
        assert daemon.channels["telegram"].state is State.CONNECTED
        update = fake.user_message(42, "hello there")
        await fake.wait_for(answered(42))
        [reply] = fake.chat_log(42)  # the "Thinking…" placeholder became the reply
        assert reply.history == ["Thinking…"]
        assert "hello there" in reply.text
        assert reply.parse_mode == "HTML"
        assert calls_to(fake, 42)[0].params["link_preview_options"] == {"is_disabled": True}
        assert fake.chat_actions[0].chat_id == 42 and fake.chat_actions[0].action == "typing"
    [commands] = fake.commands.values()
    assert [c["command"] for c in commands] == list(COMMANDS) == ["help", "new", "stop", "status"]
    # stop() confirmed the update, so a restart does not answer it again.
    confirm = [c for c in fake.calls if c.method == "getUpdates" and c.params["timeout"] == 0]
    assert [c.params["offset"] for c in confirm] == [update["update_id"] + 1]


async def test_long_reply_is_split_into_valid_html_chunks(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    code = [f"value_{i:04d} = compute({i}) & mask < limit  # step {i}" for i in range(220)]
    reply = "Here is the **script** you asked for:\n\n```python\n" + "\n".join(code) + "\n```\n"
    reply += "\nThat's all: *run it* with `python script.py`."
    assert len(reply) > 10_000
    llm = ScriptedLLM(lambda said: reply)
    async with Daemon(make_config(fake, tmp_path), llm=llm):
        fake.user_message(42, "write me a script")
        await fake.wait_for(answered(42, "run it"), timeout=10)
    log = fake.chat_log(42)
    assert len(log) >= 3
    assert not [c for c in fake.calls if c.status == 400]  # every chunk parsed as valid HTML
    for message in log:
        assert len(message.text) <= 4096
        if "value_" in message.text:
            assert "<pre>" in message.raw_text  # the fence was reopened in each code chunk
            assert any(e["type"] == "pre" for e in message.entities)
    visible = "\n".join(m.text for m in log)
    positions = [visible.index(line) for line in code]  # every code line, once, in order
    assert positions == sorted(positions)
    assert all(visible.count(line) == 1 for line in code)
    assert visible.startswith("Here is the script you asked for:")
    assert visible.endswith("That's all: run it with python script.py.")


async def test_burst_from_30_chats_gets_no_429(fake: FakeTelegram, tmp_path: Path) -> None:
    chats = range(2001, 2031)
    async with Daemon(make_config(fake, tmp_path), llm=ScriptedLLM()):
        for chat in chats:
            fake.user_message(chat, f"hi from {chat}")
        await fake.wait_for(lambda f: all(answered(c)(f) for c in chats), timeout=20)
    assert fake.rate_limited == []
    assert all(len(fake.chat_log(c)) == 1 for c in chats)


async def test_flood_wait_in_one_chat_does_not_delay_another(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    async with Daemon(make_config(fake, tmp_path), llm=ScriptedLLM()):
        fake.flood_wait(42, 20)
        started = time.monotonic()
        fake.user_message(42, "first")
        await fake.wait_for(lambda f: bool(f.rate_limited))  # chat 42 now waits 20 s
        fake.user_message(43, "second")
        await fake.wait_for(answered(43))
        assert time.monotonic() - started < 10
        assert fake.chat_log(42) == []  # still waiting out its flood wait
        assert {c.params["chat_id"] for c in fake.rate_limited} == {42}


async def test_unauthorised_user_gets_nothing_and_costs_no_llm_call(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    llm = ScriptedLLM()
    async with Daemon(make_config(fake, tmp_path, allow_from=["@bob"]), llm=llm):
        fake.user_message(77, "let me in", username="mallory")
        fake.user_message(78, "hi, it's bob", username="bob")
        await fake.wait_for(answered(78))
    assert llm.calls == ["hi, it's bob"]
    assert fake.chat_log(77) == []
    assert [a for a in fake.chat_actions if a.chat_id == 77] == []


async def test_message_not_modified_on_edit_is_success(fake: FakeTelegram, tmp_path: Path) -> None:
    # The reply equals the placeholder, so editing the placeholder changes nothing.
    async with Daemon(make_config(fake, tmp_path), llm=ScriptedLLM(lambda said: "Thinking…")):
        fake.user_message(42, "say thinking")
        await fake.wait_for(lambda f: bool(calls_to(f, 42, "editMessageText")))
        fake.user_message(42, "/help")  # a later message in the same lane...
        await fake.wait_for(answered(42, "/new"))  # ...is delivered: the lane went on
    edit = calls_to(fake, 42, "editMessageText")[0]
    assert edit.status == 400 and "message is not modified" in (edit.description or "")
    texts = [m.text for m in fake.chat_log(42)]
    assert texts[0] == "Thinking…"
    assert not any("could not be delivered" in t for t in texts)


async def test_500_on_send_is_retried_and_delivered(fake: FakeTelegram, tmp_path: Path) -> None:
    config = make_config(fake, tmp_path, placeholder={"enabled": False})
    async with Daemon(config, llm=ScriptedLLM()):
        fake.fail_next("sendMessage", "500")
        fake.user_message(42, "are you there?")
        await fake.wait_for(answered(42))
    assert [c.status for c in calls_to(fake, 42)] == [500, 200]
    assert [m.text for m in fake.chat_log(42)] == ["You said: are you there?"]


# -- groups and topics ----------------------------------------------------------------------


async def test_group_answers_only_when_addressed(fake: FakeTelegram, tmp_path: Path) -> None:
    llm = ScriptedLLM()
    async with Daemon(make_config(fake, tmp_path), llm=llm):
        fake.user_message(GROUP, "hello everyone", chat_type="supergroup", user_id=501)
        fake.push_update(
            {
                "message": {
                    "message_id": 900,
                    "date": 0,
                    "chat": {"id": GROUP, "type": "supergroup", "title": "G"},
                    "from": {"id": 501, "is_bot": False, "first_name": "Al"},
                    "new_chat_members": [{"id": 502, "is_bot": False, "first_name": "Bo"}],
                }
            }
        )
        asked = fake.user_message(
            GROUP, f"@{BOT} what is 2+2?", chat_type="supergroup", user_id=501, entities=MENTION
        )
        await fake.wait_for(answered(GROUP))
        assert llm.calls == ["what is 2+2?"]  # not "hello everyone"; the mention stripped
        [reply] = fake.chat_log(GROUP)
        assert reply.reply_to_message_id == asked["message"]["message_id"]
        fake.user_message(GROUP, f"/help@{BOT}", chat_type="supergroup", user_id=501)
        await fake.wait_for(answered(GROUP, "/new"))  # the core's /help answer
    assert llm.calls == ["what is 2+2?"]
    assert fake.rate_limited == []


async def test_forum_topics_are_separate_sessions(fake: FakeTelegram, tmp_path: Path) -> None:
    llm = ScriptedLLM()
    async with Daemon(make_config(fake, tmp_path), llm=llm):
        for topic in (7, 8):
            fake.user_message(
                GROUP,
                f"@{BOT} hi in {topic}",
                chat_type="supergroup",
                user_id=501,
                message_thread_id=topic,
                entities=MENTION,
            )
            await fake.wait_for(answered(GROUP, f"hi in {topic}"))
    assert {m.text: m.message_thread_id for m in fake.chat_log(GROUP)} == {
        "You said: hi in 7": 7,
        "You said: hi in 8": 8,
    }
    assert {a.message_thread_id for a in fake.chat_actions} == {7, 8}
    assert llm.history == [1, 1]  # topic 8 did not see topic 7's conversation


# -- intake robustness ----------------------------------------------------------------------


async def test_409_conflict_is_reported_and_polling_recovers(
    fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Daemon(make_config(fake, tmp_path), llm=ScriptedLLM()) as daemon:
        log = StateLog(daemon.channels["telegram"])
        fake.conflict(2)  # the two polls after the current one: another instance is polling
        fake.user_message(42, "one")  # ends the current poll
        assert "409 Conflict" in await log.wait_for(State.DISCONNECTED)
        fake.user_message(42, "two")
        await fake.wait_for(answered(42, "two"), timeout=10)  # PTB backs off 1 s, then 1.5 s
        assert [state for state, _ in log.states] == [
            State.DISCONNECTED,
            State.DISCONNECTED,
            State.CONNECTED,
        ]
        assert sum(c.status == 409 for c in fake.calls) == 2
    errors_logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors_logged) == 1 and "Conflict" in errors_logged[0].getMessage()


async def test_token_rejected_at_start(fake: FakeTelegram, tmp_path: Path) -> None:
    config = make_config(fake, tmp_path)
    fake.token = "123:ROTATED"  # the configured token is no longer the bot's
    async with Daemon(config, llm=ScriptedLLM()) as daemon:
        channel = daemon.channels["telegram"]
        assert channel.state is State.FAILED
        assert channel.state_detail == "telegram token rejected"
    assert [c.method for c in fake.calls] == ["getMe"]


async def test_token_revoked_while_polling_is_not_silent(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    async with Daemon(make_config(fake, tmp_path), llm=ScriptedLLM()) as daemon:
        log = StateLog(daemon.channels["telegram"])
        await fake.wait_for(lambda f: f.pending_polls > 0)
        fake.token = "123:REVOKED"
        fake.user_message(42, "hello?")  # ends the current long poll; the next one is refused
        assert await log.wait_for(State.FAILED) == "telegram token rejected"
    # ...and stop() went through although PTB's polling loop had died with InvalidToken.


async def test_webhook_checks_the_secret_then_answers(fake: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    webhook = {
        "url": f"http://127.0.0.1:{port}/tg-hook",
        "secret_token": "s3cret",
        "path": "/tg-hook",
    }
    llm = ScriptedLLM()
    config = make_config(fake, tmp_path, port=port, webhook=webhook)
    async with Daemon(config, llm=llm) as daemon:
        assert fake.webhook == {"url": webhook["url"], "secret_token": "s3cret"}
        refused = fake.user_message(42, "forged")
        assert await fake.deliver_webhook(refused, secret="wrong") == 403
        assert await fake.deliver_webhook(refused, secret=None) == 403
        assert await fake.deliver_webhook(fake.user_message(42, "genuine")) == 200
        await fake.wait_for(answered(42))
        # Shutting down: the sink refuses, so the webhook withholds its ack (Telegram resends).
        daemon.inbound.close()
        assert await fake.deliver_webhook(fake.user_message(42, "refused")) == 503
        await daemon.channels["telegram"].stop_intake()  # type: ignore[attr-defined]
        assert await fake.deliver_webhook(fake.user_message(42, "later")) == 503
    assert llm.calls == ["genuine"]
    assert [m.text for m in fake.chat_log(42)] == ["You said: genuine"]
    assert not [c for c in fake.calls if c.method == "getUpdates"]  # no polling in webhook mode


def _message(**fields: Any) -> dict[str, Any]:
    return {
        "message_id": 500,
        "date": 0,
        "chat": {"id": 42, "type": "private", "first_name": "Al"},
        "from": {"id": 42, "is_bot": False, "first_name": "Al"},
        **fields,
    }


IGNORED_UPDATES = {
    "edited message": {"edited_message": _message(text="edited", edit_date=1)},
    "sticker": {
        "message": _message(
            sticker={
                "file_id": "f",
                "file_unique_id": "u",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        )
    },
    "service message": {"message": _message(pinned_message=_message(message_id=1, text="x"))},
    "channel post": {
        "channel_post": _message(chat={"id": -100777, "type": "channel", "title": "N"}, text="p")
    },
    "from a bot": {"message": _message(**{"from": {"id": 9, "is_bot": True, "first_name": "B"}})},
    "unknown kind": {"business_future_thing": {"id": 1, "text": "?"}},
}


async def test_non_text_updates_are_ignored(fake: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    webhook = {"url": f"http://127.0.0.1:{port}/tg", "secret_token": "s3cret", "path": "/tg"}
    llm = ScriptedLLM()
    async with Daemon(make_config(fake, tmp_path, port=port, webhook=webhook), llm=llm):
        for update in IGNORED_UPDATES.values():
            assert await fake.deliver_webhook(update) == 200
        assert await fake.deliver_webhook(fake.user_message(42, "still there?")) == 200
        await fake.wait_for(answered(42))
    assert llm.calls == ["still there?"]
    assert len(fake.chat_log(42)) == 1


# -- the adapter on its own -----------------------------------------------------------------


async def test_channel_calls(fake: FakeTelegram) -> None:
    received: list[InboundMessage] = []

    async def sink(message: InboundMessage) -> None:
        received.append(message)

    config = TelegramConfig(enabled=True, token=fake.token, base_url=fake.base_url)
    channel = TelegramChannel(config, sink)
    await channel.start()
    try:
        asked = fake.user_message(GROUP, "question", chat_type="supergroup", message_thread_id=3)
        await fake.wait_for(lambda f: bool(received))
        [inbound] = received
        assert inbound.id == f"telegram:{asked['update_id']}"
        assert (inbound.chat_id, inbound.thread, inbound.is_group) == (str(GROUP), "3", True)
        assert not inbound.mentioned

        html = render("**bold** & <stuff>", "telegram_html")
        sent = await channel.send(
            str(GROUP), html, reply_to=inbound.message_id, thread=inbound.thread
        )
        [message] = fake.chat_log(GROUP)
        assert sent == str(message.message_id)
        assert (message.text, message.message_thread_id) == ("bold & <stuff>", 3)
        assert message.reply_to_message_id == asked["message"]["message_id"]

        await channel.edit(str(GROUP), sent, html)  # not modified: success
        await channel.edit(str(GROUP), sent, render("changed", "telegram_html"))
        assert message.text == "changed"
        await channel.typing(str(GROUP), thread="3")
        assert fake.chat_actions[-1].message_thread_id == 3
        await channel.delete(str(GROUP), sent)
        await channel.delete(str(GROUP), sent)  # already gone: success
        assert fake.chat_log(GROUP) == []

        with pytest.raises(errors.FormattingRejected):
            await channel.send("42", Rendered("<b>x", "HTML", "x"))
        fake.missing(404)
        with pytest.raises(errors.ChatNotFound):
            await channel.send("404", html)
        fake.forbid(403)
        with pytest.raises(errors.Forbidden):
            await channel.typing("403")

        await channel.stop_intake()  # polling stops and confirms what reached the sink
        confirm = fake.calls[-1]
        assert (confirm.method, confirm.params["offset"]) == ("getUpdates", asked["update_id"] + 1)
        fake.user_message(42, "too late")
        assert fake.pending_polls == 0 and fake.calls[-1] is confirm
        assert len(received) == 1
    finally:
        await channel.stop()
    await channel.stop()  # twice is fine


# -- error translation ----------------------------------------------------------------------

BAD = "Bad Request: "


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (tg.TimedOut(), errors.ChannelTimeout),
        (tg.NetworkError("Internal Server Error"), errors.ChannelTimeout),
        (
            tg.BadRequest(BAD + "can't parse entities: Unclosed start tag"),
            errors.FormattingRejected,
        ),
        (tg.BadRequest(BAD + "message is too long"), errors.MessageTooLong),
        (tg.BadRequest(BAD + "chat not found"), errors.ChatNotFound),
        (tg.BadRequest(BAD + "message to edit not found"), errors.BadRequest),
        (tg.Forbidden("Forbidden: bot was blocked by the user"), errors.Forbidden),
        (tg.InvalidToken("Unauthorized"), errors.Forbidden),
        (tg.Conflict("Conflict: terminated by other getUpdates request"), errors.BadRequest),
        (tg.EndPointNotFound("Not Found"), errors.BadRequest),
    ],
)
def testtranslate_errors(raised: tg.TelegramError, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught, translate_errors():
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised


def test_translate_rate_limit_and_migration() -> None:
    with pytest.raises(errors.RateLimited) as limited, translate_errors():
        raise tg.RetryAfter(dt.timedelta(seconds=20))
    assert limited.value.retry_after == 20.0
    with pytest.raises(errors.ChatMigrated) as migrated, translate_errors():
        raise tg.ChatMigrated(-1009876)
    assert migrated.value.new_chat_id == "-1009876"
    assert retry_after_seconds(7) == 7.0
    assert retry_after_seconds(dt.timedelta(seconds=2.5)) == 2.5


def test_translate_not_modified_is_success_and_start_names_the_token() -> None:
    with translate_errors():
        raise tg.BadRequest(BAD + "message is not modified: specified new message content ...")
    with (
        pytest.raises(errors.Forbidden, match=r"^telegram token rejected$"),
        translate_errors(start=True),
    ):
        raise tg.InvalidToken("Unauthorized")
    with pytest.raises(ValueError):  # not ours to translate
        with translate_errors():
            raise ValueError("boom")


# -- update translation and addressing ------------------------------------------------------

IDENTITY = BotIdentity(BOT_ID, BOT, frozenset(COMMANDS))


def _update(text: str, *, entities: list[dict[str, Any]] | None = None, **extra: Any) -> Update:
    message = {
        "message_id": 10,
        "date": 0,
        "chat": {"id": GROUP, "type": "supergroup", "title": "G"},
        "from": {"id": 501, "is_bot": False, "first_name": "Al", "username": "al"},
        "text": text,
        **extra,
    }
    if entities:
        message["entities"] = entities
    return Update.de_json({"update_id": 5, "message": message}, None)


def _command(text: str) -> list[dict[str, Any]]:
    return [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]


BOT_MESSAGE = {
    "message_id": 9,
    "date": 0,
    "chat": {"id": GROUP, "type": "supergroup", "title": "G"},
    "from": {"id": BOT_ID, "is_bot": True, "first_name": "picobot"},
    "text": "earlier answer",
}


NOT_US = {"id": 7, "is_bot": False, "first_name": "X"}
TOPIC_START = {**BOT_MESSAGE, "text": None, "forum_topic_created": {"name": "t", "icon_color": 0}}


def _entity(kind: str, offset: int, length: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": kind, "offset": offset, "length": length, **extra}]


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (_update("hello"), False),
        (_update(f"hi @{BOT.upper()}", entities=_entity("mention", 3, len(BOT) + 1)), True),
        (_update("hi @other_bot", entities=_entity("mention", 3, 10)), False),
        (_update(f"/new@{BOT}", entities=_command(f"/new@{BOT}")), True),
        (_update("/new@other_bot", entities=_command("/new@other_bot")), False),
        (_update("/status", entities=_command("/status")), True),  # ours, bare
        (_update("/weather", entities=_command("/weather")), False),  # not ours
        (_update("so?", reply_to_message=BOT_MESSAGE), True),
        (_update("so?", reply_to_message={**BOT_MESSAGE, "from": NOT_US}), False),
        # In a forum every message "replies" to the topic's creation message.
        (
            _update("t", message_thread_id=3, is_topic_message=True, reply_to_message=TOPIC_START),
            False,
        ),
        (
            _update("hey you", entities=_entity("text_mention", 4, 3, user=BOT_MESSAGE["from"])),
            True,
        ),
    ],
)
def test_addressed(update: Update, expected: bool) -> None:
    assert update.message is not None
    assert addressed(update.message, IDENTITY) is expected
    inbound = to_inbound(update, IDENTITY)
    assert inbound is not None and inbound.mentioned is expected


def test_to_inbound_fields() -> None:
    update = _update(f"@{BOT} what now?", entities=MENTION)
    inbound = to_inbound(update, IDENTITY)
    assert inbound is not None
    assert inbound.id == "telegram:5" and inbound.message_id == "10"
    assert (inbound.sender.id, inbound.sender.username, inbound.sender.display_name) == (
        "501",
        "al",
        "Al",
    )
    assert inbound.text == "what now?"
    assert inbound.thread is None  # not a forum topic
    private = Update.de_json({"update_id": 6, "message": _message(text="hi")}, None)
    inbound = to_inbound(private, IDENTITY)
    assert inbound is not None and not inbound.is_group and not inbound.mentioned


# -- the rate budget against Telegram's limits ----------------------------------------------


def _core_schedule(
    rates: Sequence[Rate], count: int, delay: Callable[[], float] = lambda: 0.0
) -> list[float]:
    """When `count` calls, all queued at once in one lane, reach Telegram. Each call takes a
    slot at each level in turn, waiting until that level has room, starts once it holds them
    all, and arrives `delay()` s later (its answer comes back no sooner). A level is a leaky
    bucket of `burst` draining `per_second` (aiolimiter), or for a window `Rate` at most
    `burst` calls per `burst / per_second` s, each counted until it ended (`SlidingWindow`)."""
    buckets = [[0.0, 0.0] for _ in rates]  # [level, when measured]
    arrivals: list[float] = []
    now = 0.0
    for _ in range(count):
        for rate, bucket in zip(rates, buckets, strict=True):
            if rate.window:
                if len(arrivals) >= rate.burst:
                    ended = sorted(arrivals)[-rate.burst]
                    now = max(now, ended + rate.burst / rate.per_second)
                continue
            level = max(0.0, bucket[0] - (now - bucket[1]) * rate.per_second)
            if level + 1 > rate.burst:  # wait until it drained enough
                now += (level + 1 - rate.burst) / rate.per_second
                level = rate.burst - 1.0
            bucket[:] = [level + 1, now]
        arrivals.append(now + delay())
    return arrivals


BUDGET = CAPABILITIES.rate


@pytest.mark.parametrize(
    ("rates", "chat_ids", "calls", "jitter"),
    [
        ([BUDGET.per_chat, BUDGET.overall], [42], 300, 0.5),
        ([BUDGET.per_chat, BUDGET.per_group, BUDGET.overall], [GROUP], 80, 2.0),
        ([BUDGET.overall], list(range(1, 601)), 600, 0.03),  # one call in each of many chats
    ],
    ids=["private chat", "group", "many chats"],
)
def test_rate_budget_never_trips_telegram_limits(
    rates: list[Rate], chat_ids: list[int], calls: int, jitter: float
) -> None:
    """Calls as fast as our budget lets them, each reaching Telegram up to `jitter` s late,
    checked by the fake's own flood rules with its default limits: not one 429."""
    clock = ManualClock(0.0)
    limits = FakeTelegram(clock=clock).limits
    rng = random.Random(5)
    schedule = _core_schedule(rates, calls, lambda: rng.uniform(0.0, jitter))
    arrivals = sorted((at, chat_ids[k % len(chat_ids)]) for k, at in enumerate(schedule))
    for at, chat in arrivals:
        clock.now = at
        try:
            limits.check(chat, send=True)
        except ApiError as exc:
            pytest.fail(f"a call at {at:.2f} s was answered {exc.description}")
    assert arrivals[-1][0] > 5.0  # the budget did pace the calls


def test_rate_budget_lets_a_short_burst_through_at_once() -> None:
    # A reply of 2 messages (placeholder + 1 chunk, or 2 chunks) is not delayed.
    assert _core_schedule([BUDGET.per_chat, BUDGET.overall], 2) == [0.0, 0.0]
    assert _core_schedule([BUDGET.per_chat, BUDGET.per_group, BUDGET.overall], 2) == [0.0, 0.0]
