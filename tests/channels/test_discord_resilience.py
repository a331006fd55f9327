"""Discord under a failing platform: real discord.py against FakeDiscord, the real daemon."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from channels.discord_channel import DiscordChannel
from picobot.agent.demo import DemoLLM
from picobot.config import Config, parse_config
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_discord import FakeDiscord

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports `audioop`
    import discord  # noqa: F401

BOT, ALICE = 1000, 3000
PLACEHOLDER = "Thinking…"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    monkeypatch.setattr(DiscordChannel, "guild_ready_timeout", 0.05)
    async with FakeDiscord(bot_id=BOT) as fake:
        with fake.patch_discord():
            yield fake


def make_config(fake: FakeDiscord, tmp_path: Path, **dispatch: Any) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"host": "127.0.0.1", "port": 0},
            "dispatch": {"drain_timeout": 5.0, **dispatch},
            "channels": {
                "web": {"enabled": False},
                "discord": {"enabled": True, "token": fake.token, "allow_from": ["*"]},
            },
        },
        env={},
    )


def answered(fake: FakeDiscord, channel_id: int, said: str) -> bool:
    return any(f"> {said}" in m.content for m in fake.channel_log(channel_id))


async def test_a_lost_placeholder_answer_leaves_no_orphan(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    """The placeholder is created but its answer is lost: the retry carries the same nonce, so
    Discord returns that message and picobot edits it into the reply."""
    async with Daemon(make_config(fake, tmp_path, max_backoff=0.1), llm=DemoLLM(delay=0)):
        fake.fail_next("message_create", "lost_response")
        await fake.user_message(30, "hello", author_id=ALICE)
        await fake.wait_for(lambda: answered(fake, 30, "hello"))
    creates = [c for c in fake.calls if c.route == "message_create"]
    assert len(creates) == 2 and not creates[0].answered
    assert creates[0].json["nonce"] == creates[1].json["nonce"]
    [reply] = fake.channel_log(30)  # one message: the placeholder turned reply
    assert reply.history[0] == PLACEHOLDER and "> hello" in reply.content


async def test_no_duplicates_or_orphans_under_500s_and_dropped_connections(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    config = make_config(fake, tmp_path, max_backoff=0.2, max_attempts=8)
    async with Daemon(config, llm=DemoLLM(delay=0)):
        fake.chaos(error_rate=0.2, drop_rate=0.1, seed=14)
        chats = list(range(40, 48))
        for chat in chats:
            await fake.user_message(chat, f"question {chat}", author_id=ALICE + chat)
        await fake.wait_for(
            lambda: all(answered(fake, c, f"question {c}") for c in chats), timeout=60
        )
        assert sum(1 for c in fake.calls if not c.answered or c.status >= 500) >= 5
    for chat in chats:  # exactly one message each: no duplicate, no "Thinking…" left behind
        [reply] = fake.channel_log(chat)
        assert f"> question {chat}" in reply.content
