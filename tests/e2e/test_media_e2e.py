"""Outbound files survive a crash: `picobot run` in a subprocess, SIGKILLed mid-upload."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

import yaml

from tests.e2e.harness import running
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.fakes.fake_telegram import FakeTelegram

CHAT = 77
TIMEOUT = 30.0


def pending_replies(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db:
        return int(
            db.execute("SELECT count(*) FROM outbound WHERE state = 'pending'").fetchone()[0]
        )


def write_config(tmp: Path, telegram: FakeTelegram, openai: FakeOpenAI) -> Path:
    config = telegram.picobot_config(
        tmp / "data", placeholder={"enabled": False}, streaming={"enabled": False}
    )
    config |= {
        "llm": {
            "provider": "openai",
            "base_url": openai.base_url,
            "api_key": openai.api_key,
            "model": openai.model,
            "max_retries": 0,
        },
        "images": {"enabled": True, "size": "256x256"},
        "dispatch": {"max_backoff": 1, "drain_timeout": 2},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_sigkill_between_recording_and_uploading_sends_the_photo_once(
    tmp_path: Path,
) -> None:
    async with FakeTelegram() as telegram, FakeOpenAI() as openai:
        openai.script(
            Reply(tool_calls=[ToolCall("generate_image", {"prompt": "a fox"})]),
            Reply(text="Here is your fox."),
        )
        config = write_config(tmp_path, telegram, openai)
        telegram.fail_next("sendPhoto", "timeout")  # the upload hangs: never completes
        async with running(config) as bot:
            await bot.ready()
            telegram.user_message(CHAT, "draw a fox")
            await telegram.wait_for(
                lambda f: any(c.method == "sendPhoto" for c in f.calls), TIMEOUT
            )
            # Both the photo and the closing text are recorded before the kill.
            await openai.wait_requests(2, TIMEOUT)
            await telegram.wait_for(lambda f: pending_replies(tmp_path / "data") >= 2, TIMEOUT)
            assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
        assert telegram.files.uploads == []
        async with running(config) as bot:
            await bot.ready()
            await telegram.wait_for(lambda f: len(f.files.uploads) == 1, TIMEOUT)
            await telegram.wait_for(
                lambda f: any("Here is your fox." in m.text for m in f.chat_log(CHAT)), TIMEOUT
            )
            assert await bot.stop() == 0
        assert [u.kind for u in telegram.files.uploads] == ["photo"]
        assert [m.text for m in telegram.chat_log(CHAT)].count("Here is your fox.") == 1
        assert len(openai.media.images) == 1  # the turn was not run again
        assert pending_replies(tmp_path / "data") == 0
