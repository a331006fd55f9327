"""SlackChannel with the real slack-bolt / slack_sdk against FakeSlack on 127.0.0.1.

End-to-end tests run the whole daemon (intake, agent, dispatcher) with the demo model; the
others start the channel on its own. Nothing sleeps to synchronise: tests wait on what the fake
recorded (`fake.wait_for`) or on an event the test itself sets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from channels.slack_channel import SlackChannel
from channels.slack_errors import translate_errors
from picobot.agent.demo import DemoLLM
from picobot.config import Config, parse_config
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
from tests.fakes.fake_slack import BOT_USER_ID, FakeMessage, FakeSlack
from tests.fakes.paced_llm import PacedLLM
from tests.fakes.slack_socket import slack_signature

SECRET = "signing-secret"
PLACEHOLDER = "Thinking…"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


def make_config(fake: FakeSlack, tmp_path: Path, *, drain: float = 5.0, **slack: Any) -> Config:
    settings = {
        "enabled": True,
        "bot_token": fake.bot_token,
        "app_token": fake.app_token,
        "base_url": fake.base_url,
        "allow_from": ["*"],
        **slack,
    }
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"host": "127.0.0.1", "port": 0},
            "dispatch": {"drain_timeout": drain},
            "channels": {"web": {"enabled": False}, "slack": settings},
        },
        env={},
    )


@asynccontextmanager
async def running(
    fake: FakeSlack, tmp_path: Path, llm: Any = None, **kw: Any
) -> AsyncIterator[Daemon]:
    async with Daemon(make_config(fake, tmp_path, **kw), llm=llm or DemoLLM(delay=0)) as daemon:
        assert daemon.channels["slack"].state is State.CONNECTED
        yield daemon


@asynccontextmanager
async def standalone(fake: FakeSlack, tmp_path: Path, **kw: Any) -> AsyncIterator[SlackChannel]:
    """The channel alone, for outbound calls (no events are pushed to it)."""
    channel = SlackChannel(make_config(fake, tmp_path, **kw).channels.slack, _no_sink)
    await channel.start()
    try:
        yield channel
    finally:
        await channel.stop()


def log_of(fake: FakeSlack, channel: str, thread: str | None = None) -> list[FakeMessage]:
    return fake.channel_log(channel, thread, include_deleted=True)


def replied(fake: FakeSlack, channel: str, said: str) -> bool:
    return any(f"> {said}" in m.text for m in fake.channel_log(channel))


# ---- end to end, Socket Mode ----


async def test_dm_placeholder_is_edited_into_the_reply(fake: FakeSlack, tmp_path: Path) -> None:
    async with running(fake, tmp_path):
        envelope_id = await fake.push_event(fake.dm_event("U1", "hello there"))
        await fake.wait_for(lambda: replied(fake, "D1", "hello there"))
        assert fake.acks == [envelope_id]
    # After shutdown (which drains the outbox): one message, the placeholder turned reply.
    [reply] = log_of(fake, "D1")
    assert reply.history == [PLACEHOLDER] and "You said:" in reply.text
    assert reply.thread_ts is None and not reply.deleted  # a top-level DM stays top-level
    assert [c.method for c in fake.calls if c.method.startswith("chat.")] == [
        "chat.postMessage",
        "chat.update",
    ]


@pytest.mark.parametrize("placeholder", [False, True])
async def test_mention_is_answered_in_its_thread(
    fake: FakeSlack, tmp_path: Path, placeholder: bool
) -> None:
    async with running(fake, tmp_path, placeholder={"enabled": placeholder}) as daemon:
        first = fake.mention_event("U1", "what is up?", channel="C1")
        await fake.push_event(first)
        await fake.wait_for(lambda: replied(fake, "C1", "what is up?"))
        follow_up = fake.mention_event("U1", "and now?", channel="C1", thread_ts=first["ts"])
        await fake.push_event(follow_up)
        await fake.wait_for(lambda: replied(fake, "C1", "and now?"))
        # One session per thread: the follow-up's turn had the first exchange as history.
        history = await daemon.agent.history(f"slack:C1:{first['ts']}")
        assert [m["content"] for m in history if m["role"] == "user"] == ["what is up?", "and now?"]
    messages = log_of(fake, "C1")
    assert len(messages) == 2 and all(m.thread_ts == first["ts"] for m in messages)
    assert all(f"<@{BOT_USER_ID}>" not in m.text for m in messages)  # the mention is stripped
    assert {(s["channel_id"], s["thread_ts"], s["status"]) for s in fake.statuses} >= {
        ("C1", first["ts"], "is thinking…")
    }


async def test_long_reply_is_split_keeping_code_blocks_whole(
    fake: FakeSlack, tmp_path: Path
) -> None:
    # ~9 600 characters: one message before, although Slack recommends at most 4 000.
    lines = [f"value_{i:05d} = compute({i})  # a comment to make lines long" for i in range(165)]
    text = "Here is the file:\n\n```python\n" + "\n".join(lines) + "\n```\n\nThat is all."
    assert 9_000 < len(text) < 10_000
    async with running(fake, tmp_path, llm=PacedLLM(text)):
        await fake.push_event(fake.dm_event("U1", "send me the file"))
        await fake.wait_for(
            lambda: any("That is all." in m.text for m in fake.channel_log("D1")), timeout=15
        )
    messages = log_of(fake, "D1")
    assert len(messages) >= 3 and messages[0].history == [PLACEHOLDER]
    assert fake.oversized == []  # nothing Slack would break up itself
    assert all(len(m.text) <= 4_000 and m.text.count("```") % 2 == 0 for m in messages)
    joined = "\n".join(m.text for m in messages)
    assert all(line in joined for line in lines)  # nothing lost, in every chunk a closed fence
    assert [c.status for c in fake.calls if c.method.startswith("chat.")] == [200] * len(
        messages
    ) + [200]  # placeholder post + its edit + one post per further chunk: never a 429


async def test_flood_wait_in_one_channel_does_not_delay_another(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.force_429("chat.postMessage", channel="C1", retry_after=20)
    async with running(fake, tmp_path, drain=0.2):
        await fake.push_event(fake.mention_event("U1", "busy channel", channel="C1"))
        await fake.wait_for(lambda: len(fake.rate_limited) == 1)
        await fake.push_event(fake.dm_event("U2", "quiet dm", channel="D2"))
        await fake.wait_for(lambda: replied(fake, "D2", "quiet dm"))
        # C1 is still sitting out its 20 s: one attempt so far, nothing posted.
        c1 = [c for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == "C1"]
        assert [c.status for c in c1] == [429] and fake.channel_log("C1") == []


async def test_retry_after_is_waited_out(fake: FakeSlack, tmp_path: Path) -> None:
    # 2 s, longer than the 1 s per-chat pacing, so only honouring Retry-After explains the gap.
    fake.force_429("chat.postMessage", channel="D1", retry_after=2)
    async with running(fake, tmp_path):
        await fake.push_event(fake.dm_event("U1", "patience"))
        await fake.wait_for(lambda: replied(fake, "D1", "patience"), timeout=10)
    first, second = fake.calls_to("chat.postMessage")
    assert (first.status, second.status) == (429, 200) and second.at - first.at >= 2.0
    assert len(log_of(fake, "D1")) == 1


async def test_envelope_is_acked_only_after_the_sink_accepted(
    fake: FakeSlack, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as daemon:
        channel = daemon.channels["slack"]
        entered, release = asyncio.Event(), asyncio.Event()
        accept = channel.sink

        async def slow_sink(msg: InboundMessage) -> None:
            if msg.chat_id == "D1":
                entered.set()
                await release.wait()
            await accept(msg)

        channel.sink = slow_sink
        held = await fake.push_event(fake.dm_event("U1", "held"))
        await asyncio.wait_for(entered.wait(), 5)
        other = await fake.push_event(fake.dm_event("U2", "other", channel="D2"))
        await fake.wait_ack(other)  # frames are ordered: an early ack of `held` came first
        assert held not in fake.acks
        release.set()
        await fake.wait_ack(held)
        await fake.wait_for(lambda: replied(fake, "D1", "held"))


async def test_unaccepted_event_is_redelivered_then_answered_once(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.redeliver_unacked_after = 0.2  # Slack's ack timeout, shortened
    async with running(fake, tmp_path) as daemon:
        channel = daemon.channels["slack"]
        accept, calls = channel.sink, []

        async def flaky_sink(msg: InboundMessage) -> None:
            calls.append(msg.id)
            if len(calls) == 1:
                raise RuntimeError("the core could not take it")
            await accept(msg)

        channel.sink = flaky_sink
        first = await fake.push_event(fake.dm_event("U1", "try again"))
        await fake.wait_for(lambda: replied(fake, "D1", "try again"))
    assert first not in fake.acks and len(fake.acks) == 1  # the retry, not the failed try
    assert calls[0] == calls[1] and len(log_of(fake, "D1")) == 1


async def test_redelivered_envelope_is_answered_once(fake: FakeSlack, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as daemon:
        await fake.push_event(fake.dm_event("U1", "only once"))
        await fake.wait_for(lambda: replied(fake, "D1", "only once"))
        [envelope] = fake.envelopes
        # Slack resends an event whose ack it did not see: same event_id, new envelope.
        again = {**envelope, "envelope_id": "redelivery", "retry_attempt": 1}
        await fake.send_socket_json({**again, "retry_reason": "timeout"})
        await fake.wait_ack("redelivery")
        # A later message in the same session runs after anything the duplicate started.
        await fake.push_event(fake.dm_event("U1", "next one"))
        await fake.wait_for(lambda: replied(fake, "D1", "next one"))
        history = await daemon.agent.history("slack:D1")
    assert [m["content"] for m in history if m["role"] == "user"] == ["only once", "next one"]
    texts = [m.text for m in log_of(fake, "D1")]
    assert len(texts) == 2 and sum("only once" in t for t in texts) == 1


async def test_malformed_and_foreign_events_are_ignored(fake: FakeSlack, tmp_path: Path) -> None:
    dm = {"type": "message", "channel_type": "im", "channel": "D1"}
    ignored = [
        {**dm, "user": "U1", "ts": fake.next_ts(), "text": {"not": "a string"}},
        {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> no channel, no ts"},
        {**dm, "text": "no user", "ts": fake.next_ts()},
        {**dm, "subtype": "message_changed", "ts": fake.next_ts(), "message": {"text": "edited"}},
        {**fake.dm_event("U3", "from another bot"), "bot_id": "B2"},
        fake.dm_event(BOT_USER_ID, "our own message"),
        {"type": "reaction_added", "user": "U1", "reaction": "+1", "event_ts": fake.next_ts()},
        fake.mention_event("U1", ""),  # a bare mention: nothing to answer
    ]
    async with running(fake, tmp_path) as daemon:
        envelope_ids = [await fake.push_event(event) for event in ignored]
        await fake.send_socket_json({"envelope_id": "junk", "type": "events_api", "payload": 7})
        for envelope_id in envelope_ids:
            await fake.wait_ack(envelope_id)  # acknowledged, so Slack does not resend them
        await fake.push_event(fake.dm_event("U1", "still there?"))
        await fake.wait_for(lambda: replied(fake, "D1", "still there?"))
        assert daemon.channels["slack"].state is State.CONNECTED
        history = await daemon.agent.history("slack:D1")
    assert [m["content"] for m in history if m["role"] == "user"] == ["still there?"]
    assert len(log_of(fake, "D1")) == 1 and "C1" not in fake.messages


async def test_socket_reconnect_is_reflected_in_state(fake: FakeSlack, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as daemon:
        channel = daemon.channels["slack"]
        states: list[State] = []
        back = asyncio.Event()
        set_state = channel.set_state

        def recording(state: State, detail: str = "") -> None:
            states.append(state)
            set_state(state, detail)
            if state is State.CONNECTED:
                back.set()

        channel.set_state = recording  # type: ignore[method-assign]
        await fake.disconnect_socket()
        await asyncio.wait_for(back.wait(), 5)
        assert states == [State.DISCONNECTED, State.CONNECTED] and channel.connected
        await fake.push_event(fake.dm_event("U1", "after reconnect"))
        await fake.wait_for(lambda: replied(fake, "D1", "after reconnect"))


# ---- end to end, HTTP (Events API) ----


async def test_http_mode_checks_signatures_and_dedupes(fake: FakeSlack, tmp_path: Path) -> None:
    async with running(
        fake, tmp_path, mode="http", signing_secret=SECRET, app_token=None
    ) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/webhooks/slack"
        challenge = await fake.post_url_verification(url, signing_secret=SECRET, challenge="c-7")
        assert (challenge.status, json.loads(challenge.body)) == (200, {"challenge": "c-7"})

        forged = await fake.post_http_event(
            url, fake.dm_event("U1", "forged"), signing_secret=SECRET, bad_signature=True
        )
        stale = await fake.post_http_event(
            url,
            fake.dm_event("U1", "replayed"),
            signing_secret=SECRET,
            timestamp=int(time.time()) - 600,
        )
        assert (forged.status, stale.status) == (401, 401)

        genuine = fake.dm_event("U1", "genuine")
        assert (await fake.post_http_event(url, genuine, signing_secret=SECRET)).status == 200
        retry = await fake.post_http_event(url, genuine, signing_secret=SECRET, retry_attempt=1)
        assert retry.status == 200  # acknowledged, not answered again
        await fake.wait_for(lambda: replied(fake, "D1", "genuine"))
        assert fake.socket_connections == 0
        history = await daemon.agent.history("slack:D1")
    # The agent never saw the forged or stale posts, nor the retry.
    assert [m["content"] for m in history if m["role"] == "user"] == ["genuine"]
    assert len(log_of(fake, "D1")) == 1


async def test_http_mode_answers_bad_bytes_with_a_json_4xx(
    fake: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(
        fake, tmp_path, mode="http", signing_secret=SECRET, app_token=None
    ) as daemon:
        url = f"http://127.0.0.1:{daemon.port}/webhooks/slack"
        now = str(int(time.time()))
        cases = [("soon", '{"type": "event_callback"}'), (now, '{"type": "event_cal')]
        async with aiohttp.ClientSession() as http:
            for ts, body in cases:
                headers = {
                    "Content-Type": "application/json",
                    "X-Slack-Request-Timestamp": ts,
                    "X-Slack-Signature": slack_signature(SECRET, ts, body),
                }
                async with http.post(url, data=body.encode(), headers=headers) as r:
                    assert 400 <= r.status < 500, (ts, body, r.status)
                    assert (await r.json())["error"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# ---- the channel on its own ----


async def test_send_edit_delete_round_trip(fake: FakeSlack, tmp_path: Path) -> None:
    fake.enforce_limits = False
    async with standalone(fake, tmp_path) as channel:
        ts = await channel.send("C1", render("*hi* <there>", "slack_mrkdwn"), thread="1.000001")
        msg = fake.messages["C1"][ts]
        assert (msg.thread_ts, msg.mrkdwn) == ("1.000001", True)
        await channel.edit("C1", ts, render("hi", "slack_mrkdwn"))
        await channel.edit("C1", ts, render("hi", "slack_mrkdwn"))  # identical text is fine
        assert (msg.text, msg.edits) == ("hi", 2)
        await channel.delete("C1", ts)
        await channel.delete("C1", ts)  # already gone counts as deleted
        assert msg.deleted
        with pytest.raises(BadRequest):
            await channel.edit("C1", ts, render("too late", "plain"))
        reply = await channel.send("C2", render("quoted", "plain"), reply_to=ts)
        assert fake.messages["C2"][reply].thread_ts == ts  # a reply threads under the message


async def test_outbound_errors_are_translated(fake: FakeSlack, tmp_path: Path) -> None:
    fake.enforce_limits = False
    fake.forbid("C2")
    fake.missing("C3")
    async with standalone(fake, tmp_path) as channel:
        with pytest.raises(Forbidden):
            await channel.send("C2", render("hi", "plain"))
        with pytest.raises(ChatNotFound):
            await channel.send("C3", render("hi", "plain"))
        with pytest.raises(MessageTooLong):
            await channel.send("C1", render("x" * 40_001, "plain"))
        fake.force_429("chat.update", retry_after=20)
        with pytest.raises(RateLimited) as limited:
            ts = await channel.send("C1", render("a", "plain"))
            await channel.edit("C1", ts, render("b", "plain"))
        assert limited.value.retry_after == 20
        fake.fail_next("chat.postMessage", "503")
        with pytest.raises(ChannelTimeout):
            await channel.send("C1", render("hi", "plain"))
        fake.fail_next("chat.postMessage", "drop")
        with pytest.raises(ChannelTimeout) as dropped:
            await channel.send("C1", render("hi", "plain"))
        assert isinstance(dropped.value, TimeoutError)
    assert [m.text for m in fake.channel_log("C1")] == ["a"]  # no SDK retry re-posted anything


async def test_typing_needs_a_thread_and_stops_where_unsupported(
    fake: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.enforce_limits = False
    async with standalone(fake, tmp_path) as channel:
        await channel.typing("D1")  # no thread: nothing to show the status in
        assert fake.statuses == []
        placeholder = await channel.send("C1", render("…", "plain"), thread="1.000001")
        await channel.typing("C1", "1.000001")
        await channel.edit("C1", placeholder, render("answer", "plain"))
        # The edit does not clear the status the way a new reply would, so the channel does.
        assert [s["status"] for s in fake.statuses] == ["is thinking…", ""]

        calls = 0

        async def unknown_method(**kw: Any) -> None:
            nonlocal calls
            calls += 1
            raise api_error("unknown_method")

        monkeypatch.setattr(channel._client, "assistant_threads_setStatus", unknown_method)
        await channel.typing("C1", "1.000001")  # not an error: just unavailable
        await channel.typing("C1", "1.000001")
        assert calls == 1


async def test_start_fails_cleanly_on_bad_tokens(fake: FakeSlack, tmp_path: Path) -> None:
    for tokens in ({"bot_token": "xoxb-wrong"}, {"app_token": "xapp-wrong"}):
        channel = SlackChannel(make_config(fake, tmp_path, **tokens).channels.slack, _no_sink)
        with pytest.raises(Forbidden):
            await channel.start()
        await channel.stop()  # safe again after a failed start
        assert channel.state is State.STOPPED
    assert fake.socket_connections == 0


async def test_daemon_reports_a_failed_start(fake: FakeSlack, tmp_path: Path) -> None:
    config = make_config(fake, tmp_path, bot_token="xoxb-wrong")
    async with Daemon(config, llm=DemoLLM(delay=0)) as daemon:
        channel = daemon.channels["slack"]
        assert channel.state is State.FAILED and "invalid_auth" in channel.state_detail


# ---- translate_errors, unit level ----


def api_error(
    code: str | None, status: int = 200, headers: dict[str, str] | None = None
) -> SlackApiError:
    data: dict[str, Any] = {"ok": False, "error": code} if code else {}
    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/chat.postMessage",
        req_args={},
        data=data,
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (api_error("ratelimited", 429, {"Retry-After": "17"}), RateLimited),
        (api_error(None, 500), ChannelTimeout),
        (api_error(None, 503), ChannelTimeout),
        (api_error("internal_error"), ChannelTimeout),
        (TimeoutError(), ChannelTimeout),
        (ConnectionResetError(), ChannelTimeout),
        (api_error("not_in_channel"), Forbidden),
        (api_error("is_archived"), Forbidden),
        (api_error("not_authed"), Forbidden),
        (api_error("invalid_auth"), Forbidden),
        (api_error("account_inactive"), Forbidden),
        (api_error("missing_scope"), Forbidden),
        (api_error("channel_not_found"), ChatNotFound),
        (api_error("msg_too_long"), MessageTooLong),
        (api_error("invalid_blocks"), BadRequest),
        (api_error("message_not_found"), BadRequest),
        (api_error("no_text"), BadRequest),
    ],
)
def testtranslate_errors_mapping(error: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info, translate_errors():
        raise error
    assert type(info.value) is expected and info.value.__cause__ is error


def testtranslate_errors_reads_retry_after_and_keeps_our_errors() -> None:
    with pytest.raises(RateLimited) as info, translate_errors():
        raise api_error("ratelimited", 429, {"Retry-After": "17"})
    assert info.value.retry_after == 17 and "chat.postMessage" in str(info.value)
    with pytest.raises(RateLimited) as info, translate_errors():
        raise api_error(None, 429)  # no header: wait a second rather than not at all
    assert info.value.retry_after == 1
    ours = ChannelTimeout("ours")
    with pytest.raises(ChannelTimeout) as kept, translate_errors():
        raise ours
    assert kept.value is ours


async def _no_sink(msg: InboundMessage) -> None:
    raise AssertionError("no message expected")


async def test_streaming_grows_one_message_by_edits(fake: FakeSlack, tmp_path: Path) -> None:
    reply = "Streaming on Slack: " + " ".join(f"w{i}" for i in range(40)) + " **end**"
    llm = PacedLLM(reply, duration=3.0, pieces=30)  # edits are budgeted at 1/s per chat
    async with running(fake, tmp_path, llm, streaming={"flush_interval": 0.3}):
        await fake.push_event(fake.dm_event("U1", "stream it"))
        await fake.wait_for(lambda: any("*end*" in m.text for m in fake.channel_log("D1")), 15)
    [message] = fake.channel_log("D1")  # the placeholder, edited all the way
    assert message.text == reply.replace("**end**", "*end*")  # final edit in mrkdwn
    partials = message.history[1:]  # after "Thinking…"
    assert len(partials) >= 2 and all(reply.startswith(p) for p in partials)
    assert fake.rate_limited == []
