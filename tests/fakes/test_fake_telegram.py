"""The fake Telegram Bot API, proven against the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dtm
import html
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import telegram
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from telegram import Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest

from tests.fakes.fake_telegram import FakeTelegram, ManualClock
from tests.fakes.telegram_rules import parse_html, parse_markdown_v2, utf16_len

CHAT = 4242
GROUP = -1001234567890


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without it, RetryAfter.__init__ emits PTBDeprecationWarning, which filterwarnings=error
    # turns into an exception that *replaces* the RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(fake.token, base_url=fake.base_url) as client:
        yield client


# ----------------------------------------------------------------------------- messages


async def test_send_and_edit_round_trip(fake: FakeTelegram, bot: telegram.Bot) -> None:
    sent = await bot.send_message(CHAT, "<b>Hi</b> &lt;there&gt; 😀 <i>x</i>", parse_mode="HTML")
    assert sent.text == "Hi <there> 😀 x"
    assert sent.chat.id == CHAT and sent.from_user and sent.from_user.is_bot
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 2),
        ("italic", 14, 1),  # the emoji counts 2 UTF-16 units
    ]
    edited = await bot.edit_message_text("second", chat_id=CHAT, message_id=sent.message_id)
    assert edited.text == "second" and edited.edit_date is not None

    [stored] = fake.chat_log(CHAT)
    assert (stored.text, stored.raw_text, stored.parse_mode) == ("second", "second", None)
    assert stored.edits == 1 and stored.history == ["Hi <there> 😀 x"]
    assert [c.method for c in fake.calls] == ["getMe", "sendMessage", "editMessageText"]
    assert all(c.status == 200 for c in fake.calls)


async def test_identical_edit_is_not_modified(fake: FakeTelegram, bot: telegram.Bot) -> None:
    sent = await bot.send_message(CHAT, "<b>same</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await sent.edit_text("<b>same</b>", parse_mode="HTML")
    # Same rendered content through another markup is still "not modified".
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await sent.edit_text("*same*", parse_mode="MarkdownV2")
    await sent.edit_text("same")  # the bold entity goes away: a real change
    assert fake.chat_log(CHAT)[0].edits == 1


async def test_edit_and_delete_unknown_messages(fake: FakeTelegram, bot: telegram.Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)
    sent = await bot.send_message(CHAT, "bye")
    assert await bot.delete_message(CHAT, sent.message_id) is True
    assert fake.chat_log(CHAT) == [] and fake.messages[CHAT][sent.message_id].deleted
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(CHAT, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=sent.message_id)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<foo>x</foo>", 'unsupported start tag "foo" at byte offset 0'),
        ("a < b", 'unsupported start tag "" at byte offset 2'),
        ("é<b>x", 'can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "unexpected end tag at byte offset 1"),
        ("<b", "unclosed start tag at byte offset 0"),
        ('<span class="x">y</span>', 'tag "span" must have class "tg-spoiler"'),
        ("AT&T", "unescaped '&' at byte offset 2"),
    ],
)
async def test_html_parse_errors(
    fake: FakeTelegram, bot: telegram.Bot, text: str, error: str
) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities") as info:
        await bot.send_message(CHAT, text, parse_mode="HTML")
    # PTB strips "Bad Request: " and capitalize()s the rest, lower-casing it.
    assert error.lower() in info.value.message.lower()
    assert fake.chat_log(CHAT) == []
    assert fake.calls[-1].status == 400


async def test_all_supported_html_renders(bot: telegram.Bot) -> None:
    text = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><strike>k</strike>"
        '<del>d</del><code>c</code><pre><code class="language-python">p</code></pre>'
        '<a href="https://x.org/?a=1&amp;b=2">l</a><blockquote expandable>q</blockquote>'
        '<tg-spoiler>t</tg-spoiler><span class="tg-spoiler">y</span>'
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>&#x1F600;&quot;'
    )
    sent = await bot.send_message(CHAT, text, parse_mode="HTML")
    assert sent.text == 'bsieunskdcplqty👍😀"'
    by_type = {str(e.type): e for e in sent.entities}  # enum members hash by name
    assert by_type["pre"].language == "python"
    assert by_type["text_link"].url == "https://x.org/?a=1&b=2"
    assert "expandable_blockquote" in by_type and "custom_emoji" in by_type
    assert len(sent.entities) == 16


async def test_length_counts_visible_code_points(fake: FakeTelegram, bot: telegram.Bot) -> None:
    bold = "<b>" + "a" * 4096 + "</b>"
    fake.enforce_limits = False  # more sends than the per-chat burst
    await bot.send_message(CHAT, bold, parse_mode="HTML")  # 4103 raw, 4096 visible
    await bot.send_message(CHAT, "&lt;" * 4096, parse_mode="HTML")
    await bot.send_message(CHAT, "😀" * 4096)  # 8192 UTF-16 units, 4096 code points
    await bot.send_message(CHAT, "  " + "a" * 4096 + "\n\n")  # trimmed before counting
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "a" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "<i>" + "😀" * 4097 + "</i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(CHAT, "<b> </b>", parse_mode="HTML")
    assert [len(m.text) for m in fake.chat_log(CHAT)] == [4096] * 4


async def test_markdown_v2(bot: telegram.Bot) -> None:
    sent = await bot.send_message(
        CHAT,
        r"*bold* _it_ __u__ ~s~ ||sp|| `c\`` [l](https://x.org/a\)b) 1\.5",
        parse_mode="MarkdownV2",
    )
    assert sent.text == "bold it u s sp c` l 1.5"
    expected = "bold italic underline strikethrough spoiler code text_link".split()
    assert [e.type for e in sent.entities] == expected
    assert sent.entities[-1].url == "https://x.org/a)b"
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(CHAT, "1.5", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match=r"(?i)can't find end of bold entity at byte offset 0"):
        await bot.send_message(CHAT, "*open", parse_mode="MarkdownV2")


async def test_reply_markup_threads_and_json_bodies(fake: FakeTelegram, bot: telegram.Bot) -> None:
    inbound = fake.user_message(CHAT, "question")["message"]
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("ok", callback_data="1")]]
    )
    sent = await bot.send_message(
        CHAT, "answer", reply_to_message_id=inbound["message_id"], reply_markup=keyboard
    )
    assert sent.reply_to_message and sent.reply_to_message.text == "question"
    assert sent.reply_markup == keyboard
    assert fake.chat_log(CHAT)[0].reply_to_message_id == inbound["message_id"]
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await bot.send_message(CHAT, "x", reply_to_message_id=12345)
    # A client posting JSON (not PTB's form encoding) works too; entities arrive as a list.
    body = {
        "chat_id": CHAT,
        "text": "hey you",
        "entities": [{"type": "bold", "offset": 4, "length": 3}],
    }
    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}{fake.token}/sendMessage"
        async with http.post(url, json=body) as response:
            answer = await response.json()
    assert answer["ok"] and answer["result"]["entities"] == body["entities"]
    assert fake.chat_log(CHAT)[-1].entities == body["entities"]
    # Call.params are decoded the same way whatever the encoding: ints, JSON fields.
    first = next(c for c in fake.calls if c.method == "sendMessage")
    assert first.params["chat_id"] == CHAT
    assert first.params["reply_parameters"]["message_id"] == inbound["message_id"]
    assert first.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "ok"
    topic = await bot.send_message(GROUP, "in a topic", message_thread_id=5)
    assert topic.message_thread_id == 5 and fake.chat_log(GROUP)[0].message_thread_id == 5


async def test_chat_action_draft_and_commands(fake: FakeTelegram, bot: telegram.Bot) -> None:
    assert await bot.send_chat_action(CHAT, "typing") is True
    assert [(a.chat_id, a.action) for a in fake.chat_actions] == [(CHAT, "typing")]
    assert await bot.send_message_draft(CHAT, 7, "<b>part</b>ial", parse_mode="HTML") is True
    assert [(d.draft_id, d.text, d.raw_text) for d in fake.drafts] == [
        (7, "partial", "<b>part</b>ial")
    ]
    with pytest.raises(BadRequest, match=r"(?i)private chats"):
        await bot.send_message_draft(GROUP, 7, "nope")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message_draft(CHAT, 7, "<b>half", parse_mode="HTML")
    commands = [telegram.BotCommand("start", "Start"), telegram.BotCommand("reset", "Reset")]
    assert await bot.set_my_commands(commands) is True
    assert await bot.get_my_commands() == tuple(commands)
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([telegram.BotCommand("Bad-Name", "x")])


# ----------------------------------------------------------------------------- limits


async def test_per_chat_burst_then_retry_after(
    fake: FakeTelegram, bot: telegram.Bot, clock: ManualClock
) -> None:
    for i in range(3):
        await bot.send_message(CHAT, f"burst {i}")
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(CHAT, "one too many")
    assert info.value.retry_after == dtm.timedelta(seconds=1)
    assert len(fake.rate_limited) == 1 and fake.rate_limited[0].params["text"] == "one too many"
    await bot.send_message(CHAT + 1, "other chats are not affected")
    clock.advance(1.0)
    await bot.send_message(CHAT, "refilled")
    with pytest.raises(RetryAfter):
        await bot.send_message(CHAT, "refill is 1/s")
    # Edits draw from the same bucket.
    clock.advance(1.0)
    sent = await bot.send_message(CHAT, "base")
    with pytest.raises(RetryAfter):
        await sent.edit_text("edited")
    assert len(fake.rate_limited) == 3
    assert [m.text for m in fake.chat_log(CHAT)] == [
        "burst 0",
        "burst 1",
        "burst 2",
        "refilled",
        "base",
    ]


async def test_group_limit_is_per_minute(clock: ManualClock) -> None:
    async with (
        FakeTelegram(clock=clock, per_chat_burst=100) as fake,
        telegram.Bot(fake.token, base_url=fake.base_url) as bot,
    ):
        for i in range(20):
            await bot.send_message(GROUP, f"m{i}")
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(GROUP, "21st")
        assert info.value.retry_after == dtm.timedelta(seconds=60)
        clock.advance(45)
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(GROUP, "still inside the minute")
        assert info.value.retry_after == dtm.timedelta(seconds=15)
        clock.advance(15)
        await bot.send_message(GROUP, "next minute")
        assert len(fake.chat_log(GROUP)) == 21 and len(fake.rate_limited) == 2


async def test_global_limit_per_second(
    fake: FakeTelegram, bot: telegram.Bot, clock: ManualClock
) -> None:
    for chat in range(1, 31):
        await bot.send_message(chat, "hi")
    with pytest.raises(RetryAfter):
        await bot.send_message(31, "31st this second")
    clock.advance(1.0)
    await bot.send_message(31, "next second")
    assert len(fake.rate_limited) == 1


async def test_enforce_limits_off(clock: ManualClock) -> None:
    async with (
        FakeTelegram(clock=clock, enforce_limits=False) as fake,
        telegram.Bot(fake.token, base_url=fake.base_url) as bot,
    ):
        for i in range(10):
            await bot.send_message(CHAT, str(i))
        assert len(fake.chat_log(CHAT)) == 10 and fake.rate_limited == []


async def test_flood_wait(fake: FakeTelegram, bot: telegram.Bot, clock: ManualClock) -> None:
    sent = await bot.send_message(CHAT, "before")
    fake.flood_wait(CHAT, 7)
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(CHAT, "during")
    assert info.value.retry_after == dtm.timedelta(seconds=7)
    clock.advance(2.5)
    with pytest.raises(RetryAfter) as info:
        await sent.edit_text("edit during")
    assert info.value.retry_after == dtm.timedelta(seconds=5)  # rounded up
    await bot.send_message(CHAT + 1, "another chat")
    clock.advance(4.5)
    await bot.send_message(CHAT, "after")
    assert [m.text for m in fake.chat_log(CHAT)] == ["before", "after"]
    assert [c.method for c in fake.rate_limited] == ["sendMessage", "editMessageText"]


# ----------------------------------------------------------------------------- chats, faults


async def test_blocked_missing_and_migrated_chats(fake: FakeTelegram, bot: telegram.Bot) -> None:
    fake.forbid(CHAT)
    fake.missing(CHAT + 1)
    fake.migrate(-4242, GROUP)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(CHAT, "x")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(CHAT, "typing")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(CHAT + 1, "x")
    with pytest.raises(ChatMigrated) as info:
        await bot.send_message(-4242, "x")
    assert info.value.new_chat_id == GROUP
    assert [c.status for c in fake.calls[1:]] == [403, 403, 400, 400]
    assert fake.messages == {}


async def test_fail_next_500_then_recovers(fake: FakeTelegram, bot: telegram.Bot) -> None:
    fake.fail_next("sendMessage", "500")
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(CHAT, "x")
    await bot.send_message(CHAT, "y")
    assert [m.text for m in fake.chat_log(CHAT)] == ["y"]
    assert [(c.status, c.fault) for c in fake.calls[1:]] == [(500, "500"), (200, None)]


async def test_drop_and_lost_ack(fake: FakeTelegram, bot: telegram.Bot) -> None:
    fake.fail_next("sendMessage", "drop")
    with pytest.raises(NetworkError):
        await bot.send_message(CHAT, "never stored")
    assert fake.chat_log(CHAT) == []
    fake.fail_next("sendMessage", "drop_after")
    with pytest.raises(NetworkError):
        await bot.send_message(CHAT, "stored, ack lost")
    assert [m.text for m in fake.chat_log(CHAT)] == ["stored, ack lost"]
    assert [(c.status, c.fault, c.delivered) for c in fake.calls[1:]] == [
        (0, "drop", False),
        (200, "drop_after", False),
    ]
    await bot.send_message(CHAT, "connection pool recovered")


async def test_timeout_fault_hangs_until_client_gives_up(fake: FakeTelegram) -> None:
    request = HTTPXRequest(read_timeout=0.2)
    async with telegram.Bot(fake.token, base_url=fake.base_url, request=request) as bot:
        fake.fail_next("*", "timeout")  # after initialize(), which calls getMe
        with pytest.raises(TimedOut):
            await bot.send_message(CHAT, "slow")
        assert fake.calls[-1].fault == "timeout" and fake.chat_log(CHAT) == []
        await bot.send_message(CHAT, "fast again")
    assert [m.text for m in fake.chat_log(CHAT)] == ["fast again"]


async def test_unknown_method_and_wrong_token(fake: FakeTelegram, bot: telegram.Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("definitelyNotAMethod")
    assert fake.calls[-1].status == 404
    with pytest.raises(InvalidToken):
        async with telegram.Bot("999:WRONG", base_url=fake.base_url) as wrong:
            await wrong.get_me()
    assert fake.calls[-1].status == 401


# ----------------------------------------------------------------------------- updates


async def test_long_poll_returns_when_an_update_arrives(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda f: f.pending_polls == 1)
    update = fake.user_message(CHAT, "hello", username="bob")
    [got] = await asyncio.wait_for(poll, 5)
    assert got.update_id == update["update_id"]
    assert got.message and got.message.text == "hello" and got.message.from_user
    assert got.message.from_user.username == "bob"
    # Unconfirmed updates are delivered again; confirming via offset drops them.
    assert [u.update_id for u in await bot.get_updates()] == [got.update_id]
    assert await bot.get_updates(offset=got.update_id + 1) == ()


async def test_long_poll_times_out_empty(fake: FakeTelegram, bot: telegram.Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=dtm.timedelta(seconds=0.3)) == ()
    assert loop.time() - started >= 0.25


async def test_get_updates_limit_and_allowed_updates(fake: FakeTelegram, bot: telegram.Bot) -> None:
    for i in range(3):
        fake.user_message(CHAT, f"m{i}")
    chat = {"id": CHAT, "type": "private"}
    edited = {"message_id": 1, "date": 0, "edit_date": 1, "chat": chat, "text": "e"}
    fake.push_update({"edited_message": edited})
    assert [u.message.text for u in await bot.get_updates(limit=2) if u.message] == ["m0", "m1"]
    got = await bot.get_updates(allowed_updates=["edited_message"])
    assert [u.edited_message.text for u in got if u.edited_message] == ["e"]


async def test_conflicts(fake: FakeTelegram, bot: telegram.Bot) -> None:
    fake.conflict()
    with pytest.raises(Conflict, match=r"(?i)terminated by other getupdates request"):
        await bot.get_updates()
    assert await bot.get_updates() == ()
    # A second poller terminates the first one's pending long poll.
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda f: f.pending_polls == 1)
    async with telegram.Bot(fake.token, base_url=fake.base_url) as other:
        assert await other.get_updates() == ()
    with pytest.raises(Conflict):
        await asyncio.wait_for(first, 5)
    assert fake.overlapping_polls == 1
    # With a webhook set, getUpdates is refused until deleteWebhook.
    await bot.set_webhook("https://example.org/hook")
    with pytest.raises(Conflict, match=r"(?i)webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()
    assert await bot.get_updates() == ()


async def test_polling_application_receives_user_message(fake: FakeTelegram) -> None:
    received: list[str] = []
    got_it = asyncio.Event()

    async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message and update.message.text
        received.append(update.message.text)
        await update.message.reply_text("pong", do_quote=True)
        got_it.set()

    app = ApplicationBuilder().token(fake.token).base_url(fake.base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, on_text))
    await app.initialize()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=1))
    await app.start()
    try:
        fake.user_message(CHAT, "ping")
        async with asyncio.timeout(5):
            await got_it.wait()
        await fake.wait_for(lambda f: len(f.chat_log(CHAT)) == 1)
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert received == ["ping"]
    [reply] = fake.chat_log(CHAT)
    assert reply.text == "pong" and reply.reply_to_message_id is not None
    methods = [c.method for c in fake.calls]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    # Stopping confirms the update, so a restart would not see it again.
    assert await _pending(fake) == []


async def _pending(fake: FakeTelegram) -> list[Any]:
    async with telegram.Bot(fake.token, base_url=fake.base_url) as bot:
        return list(await bot.get_updates())


async def test_deliver_webhook(fake: FakeTelegram, bot: telegram.Bot) -> None:
    seen: list[tuple[str | None, dict[str, Any]]] = []

    async def hook(request: web.Request) -> web.Response:
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        seen.append((secret, await request.json()))
        return web.Response(status=200 if secret == "s3cret" else 403)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        assert fake.webhook == {"url": f"http://127.0.0.1:{port}/hook", "secret_token": "s3cret"}
        assert (await bot.get_webhook_info()).url.endswith("/hook")
        assert await fake.deliver_webhook({"message": {"text": "a"}}) == 200
        assert await fake.deliver_webhook({"message": {"text": "b"}}, secret="wrong") == 403
        assert await fake.deliver_webhook({"message": {"text": "c"}}, secret=None) == 403
    finally:
        await runner.cleanup()
    assert [s for s, _ in seen] == ["s3cret", "wrong", None]
    assert seen[0][1]["message"] == {"text": "a"} and "update_id" in seen[0][1]
    await bot.delete_webhook()
    assert fake.webhook is None


async def test_wait_for_times_out_with_context(fake: FakeTelegram, bot: telegram.Bot) -> None:
    await bot.send_message(CHAT, "only one")
    with pytest.raises(TimeoutError, match=r"sendMessage -> 200"):
        await fake.wait_for(lambda f: len(f.chat_log(CHAT)) == 2, timeout=0.05)


# ----------------------------------------------------------------------------- parsers


@given(st.text())
def test_escaped_html_round_trips(text: str) -> None:
    visible, entities = parse_html(html.escape(text))
    assert visible == text and entities == []


@given(st.text(), st.text(min_size=1))
def test_html_entity_offsets_are_utf16(prefix: str, inner: str) -> None:
    visible, [entity] = parse_html(f"{html.escape(prefix)}<b>{html.escape(inner)}</b>")
    assert (entity["offset"], entity["length"]) == (utf16_len(prefix), utf16_len(inner))
    assert visible == prefix + inner


@given(st.text())
def test_escaped_markdown_v2_round_trips(text: str) -> None:
    escaped = "".join("\\" + c if c in "_*[]()~`>#+-=|{}.!\\" else c for c in text)
    assert parse_markdown_v2(escaped) == (text, [])
