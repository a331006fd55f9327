"""Slack under a failing platform: the real slack-bolt against FakeSlack, the real daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from picobot.agent.demo import DemoLLM
from picobot.config import Config, parse_config
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.paced_llm import PacedLLM

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def make_config(
    fake: FakeSlack, tmp_path: Path, slack: dict[str, Any] | None = None, **dispatch: Any
) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"host": "127.0.0.1", "port": 0},
            "dispatch": {"drain_timeout": 5.0, **dispatch},
            "channels": {
                "web": {"enabled": False},
                "slack": {
                    "enabled": True,
                    "bot_token": fake.bot_token,
                    "app_token": fake.app_token,
                    "base_url": fake.base_url,
                    "allow_from": ["*"],
                    **(slack or {}),
                },
            },
        },
        env={},
    )


def answered(fake: FakeSlack, channel: str, said: str) -> bool:
    return any(f"> {said}" in m.text for m in fake.channel_log(channel))


async def test_events_do_not_depend_on_a_second_auth_test(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """bolt's own authorization called auth.test on the first events (five at once: five calls)
    and, when Slack answered 500, acknowledged them with an apology: lost for good."""
    fake = fake_slack
    async with Daemon(make_config(fake, tmp_path), llm=DemoLLM(delay=0)):
        assert len(fake.calls_to("auth.test")) == 1  # start()'s own
        fake.fail_next("auth.test", "500", count=100)
        channels = [f"D{i}" for i in range(5)]
        envelopes = await asyncio.gather(
            *(fake.push_event(fake.dm_event("U1", f"hi {c}", channel=c)) for c in channels)
        )
        await fake.wait_for(lambda: all(answered(fake, c, f"hi {c}") for c in channels))
        assert sorted(fake.acks) == sorted(envelopes)
        assert all("payload" not in fake.ack_frames[e] for e in envelopes)  # no apology text
    assert len(fake.calls_to("auth.test")) == 1


async def test_every_message_is_answered_under_500s_and_dropped_connections(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake = fake_slack
    fake.redeliver_unacked_after = 0.3  # as Slack does (after ~3 s) for an unacknowledged event
    config = make_config(fake, tmp_path, max_backoff=0.2, max_attempts=8)
    async with Daemon(config, llm=DemoLLM(delay=0)):
        fake.chaos(error_rate=0.2, drop_rate=0.1, seed=14)
        channels = [f"D{i}" for i in range(10)]
        for c in channels:
            await fake.push_event(fake.dm_event(f"U{c}", f"question in {c}", channel=c))
        await fake.wait_for(
            lambda: all(answered(fake, c, f"question in {c}") for c in channels), timeout=60
        )
        failed = [c for c in fake.calls if c.status != 200]
        assert len(failed) >= 5  # the chaos really happened
    for c in channels:  # exactly one answer each, and no "Thinking…" left behind
        [reply] = fake.channel_log(c)
        assert f"> question in {c}" in reply.text


async def test_a_long_streamed_reply_freezes_at_4000_and_continues(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """Slack recommends at most 4 000 characters a message: the live message is frozen at a
    fence-safe point and the reply goes on in a new one, never above 4 000 in any edit."""
    fake = fake_slack
    lines = [f"value_{i:05d} = compute({i})  # a comment to make lines long" for i in range(165)]
    text = "Here is the file:\n\n```python\n" + "\n".join(lines) + "\n```\n\nThat is all."
    config = make_config(fake, tmp_path, {"streaming": {"flush_interval": 0.3}})
    async with Daemon(config, llm=PacedLLM(text, duration=2.4, pieces=12)):
        await fake.push_event(fake.dm_event("U1", "stream the file"))
        await fake.wait_for(
            lambda: any("That is all." in m.text for m in fake.channel_log("D1")), timeout=30
        )
    messages = fake.channel_log("D1")
    assert len(messages) >= 3 and fake.oversized == []
    assert all(len(m.text) <= 4_000 and m.text.count("```") % 2 == 0 for m in messages)
    joined = "\n".join(m.text for m in messages)
    assert all(line in joined for line in lines)


async def test_where_replies_go_is_what_the_readme_says(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """The README said replies "go into the thread of the message"; in a DM they do not."""
    fake = fake_slack
    readme = README.read_text(encoding="utf-8")
    assert "in a DM, at the top level" in readme
    assert "into the thread\n   when the user wrote in one" in readme
    config = make_config(fake, tmp_path, {"placeholder": {"enabled": False}})
    async with Daemon(config, llm=DemoLLM(delay=0)):
        top = fake.dm_event("U1", "top level", channel="D1")
        await fake.push_event(top)
        await fake.wait_for(lambda: answered(fake, "D1", "top level"))
        threaded = fake.message_event(
            "U1", "in a thread", "D1", channel_type="im", thread_ts=top["ts"]
        )
        await fake.push_event(threaded)
        await fake.wait_for(lambda: answered(fake, "D1", "in a thread"))
    first, second = fake.channel_log("D1")
    assert first.thread_ts is None and second.thread_ts == top["ts"]
