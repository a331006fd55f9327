"""`allow_from` on every platform channel, end to end: the real client library against its fake,
the real daemon. A listed user is answered; anyone else is ignored (and logged as such)."""

from __future__ import annotations

import logging
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
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.fake_telegram import FakeTelegram

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports `audioop`
    import discord  # noqa: F401

REFUSED = "from unauthorised sender"


def refused(caplog: pytest.LogCaptureFixture, sender: str) -> bool:
    return any(REFUSED in r.getMessage() and sender in r.getMessage() for r in caplog.records)


def config(tmp_path: Path, name: str, settings: dict[str, Any]) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"host": "127.0.0.1", "port": 0},
            "dispatch": {"drain_timeout": 2.0},
            "channels": {"web": {"enabled": False}, name: {"enabled": True, **settings}},
        },
        env={},
    )


# ---- Telegram ------------------------------------------------------------------------------


async def test_telegram_answers_a_listed_id_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "picobot.intake")
    async with FakeTelegram() as fake:
        data = fake.picobot_config(tmp_path, allow_from=["4242"])
        async with Daemon(parse_config(data, env={}), llm=DemoLLM(delay=0)):
            fake.user_message(7, "not me", user_id=777, username="mallory")
            fake.user_message(8, "hello", user_id=4242, username="alice")
            await fake.wait_for(lambda f: any("You said" in m.text for m in f.chat_log(8)))
        assert fake.chat_log(7) == [] and refused(caplog, "777")


# ---- Discord -------------------------------------------------------------------------------


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    monkeypatch.setattr(DiscordChannel, "guild_ready_timeout", 0.05)
    async with FakeDiscord(bot_id=1000) as fake:
        with fake.patch_discord():
            yield fake


async def test_discord_answers_a_listed_id_only(
    discord_fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "picobot.intake")
    fake = discord_fake
    settings = {"token": fake.token, "allow_from": ["3000"]}
    async with Daemon(config(tmp_path, "discord", settings), llm=DemoLLM(delay=0)):
        await fake.user_message(31, "not me", author_id=3100, username="mallory")
        await fake.user_message(30, "hello", author_id=3000, username="alice")
        await fake.wait_for(lambda: any("You said" in m.content for m in fake.channel_log(30)))
    assert fake.channel_log(31) == [] and refused(caplog, "3100")


# ---- Slack ---------------------------------------------------------------------------------


def slack_settings(fake: FakeSlack, allow_from: list[str]) -> dict[str, Any]:
    return {
        "bot_token": fake.bot_token,
        "app_token": fake.app_token,
        "base_url": fake.base_url,
        "allow_from": allow_from,
    }


def answered(fake: FakeSlack, channel: str) -> bool:
    return any("You said" in m.text for m in fake.channel_log(channel))


@pytest.mark.parametrize("listed", ["U0ALLOWED", "u0allowed", "@alice", "@Alice"])
async def test_slack_answers_a_listed_id_or_username_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, listed: str
) -> None:
    """Slack ids are upper case: the intake lowered only the listed side, so a listed id never
    matched. `@username` is the sender's `name` from users.info, looked up once per sender."""
    caplog.set_level(logging.INFO, "picobot.intake")
    async with FakeSlack() as fake:
        fake.usernames.update({"U0ALLOWED": "alice", "U0OTHER": "mallory"})
        cfg = config(tmp_path, "slack", slack_settings(fake, [listed]))
        async with Daemon(cfg, llm=DemoLLM(delay=0)):
            await fake.push_event(fake.dm_event("U0OTHER", "not me", channel="D2"))
            await fake.push_event(fake.dm_event("U0ALLOWED", "hello", channel="D1"))
            await fake.wait_for(lambda: answered(fake, "D1"))
            await fake.push_event(fake.dm_event("U0ALLOWED", "again", channel="D1"))
            await fake.wait_for(lambda: len(fake.channel_log("D1")) == 2)
        assert fake.channel_log("D2") == [] and refused(caplog, "U0OTHER")
        looked_up = [c.params["user"] for c in fake.calls_to("users.info")]
        assert sorted(looked_up) == ["U0ALLOWED", "U0OTHER"]  # cached: once per sender


async def test_slack_failed_user_lookup_is_not_acked_and_is_redelivered(
    tmp_path: Path,
) -> None:
    async with FakeSlack() as fake:
        fake.usernames["U0ALLOWED"] = "alice"
        fake.redeliver_unacked_after = 0.1
        cfg = config(tmp_path, "slack", slack_settings(fake, ["@alice"]))
        async with Daemon(cfg, llm=DemoLLM(delay=0)):
            fake.fail_next("users.info", "500")
            envelope = await fake.push_event(fake.dm_event("U0ALLOWED", "hello", channel="D1"))
            await fake.wait_for(lambda: answered(fake, "D1"))
        assert envelope not in fake.acks  # the first delivery failed: not acknowledged
        assert [c.status for c in fake.calls_to("users.info")] == [500, 200]
        assert len(fake.channel_log("D1")) == 1


async def test_slack_without_users_read_still_answers_listed_ids(tmp_path: Path) -> None:
    """No `users:read` scope: users.info answers missing_scope; ids still work, no retries."""
    async with FakeSlack() as fake:
        cfg = config(tmp_path, "slack", slack_settings(fake, ["U0ALLOWED"]))
        async with Daemon(cfg, llm=DemoLLM(delay=0)):
            fake.fail_next("users.info", "error:missing_scope", count=100)
            await fake.push_event(fake.dm_event("U0ALLOWED", "hello", channel="D1"))
            await fake.wait_for(lambda: answered(fake, "D1"))
            await fake.push_event(fake.dm_event("U0OTHER", "hi", channel="D2"))
            await fake.push_event(fake.dm_event("U0ALLOWED", "again", channel="D1"))
            await fake.wait_for(lambda: len(fake.channel_log("D1")) == 2)
        assert len(fake.calls_to("users.info")) == 1  # not asked again
        assert fake.channel_log("D2") == []
