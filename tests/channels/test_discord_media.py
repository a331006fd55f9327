"""Discord files: attachments from the CDN in, multipart uploads out, through the real daemon
and discord.py against FakeDiscord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.discord_channel import DiscordChannel
from picobot.agent.demo import DemoLLM
from picobot.config import parse_config
from picobot.core.messages import OutboundMessage
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_discord import FakeDiscord
from tests.media import samples

DM, ALICE, BOT = 30, 3000, 1000


@pytest.fixture(autouse=True)
def fast_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DiscordChannel, "guild_ready_timeout", 0.05)
    monkeypatch.setattr(DiscordChannel, "identify_delay", 0.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_id=BOT) as fake:
        fake.add_dm(DM, ALICE, "alice")
        with fake.patch_discord():
            yield fake


def daemon(fake: FakeDiscord, tmp_path: Path) -> Daemon:
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"port": 0},
            "dispatch": {"drain_timeout": 2.0},
            "channels": {
                "web": {"enabled": False},
                "discord": {"enabled": True, "token": fake.token, "allow_from": ["*"]},
            },
        },
        env={},
    )
    return Daemon(config, llm=DemoLLM(delay=0))


def said(fake: FakeDiscord, needle: str) -> bool:
    return any(needle in m.content for m in fake.channel_log(DM))


async def test_image_attachment_reaches_the_model(fake: FakeDiscord, tmp_path: Path) -> None:
    image = samples.png(300, 200)
    attachment = fake.files.attachment(
        DM, 9001, "shot.png", image, "image/png", width=300, height=200
    )
    async with daemon(fake, tmp_path):
        await fake.user_message(DM, "", author_id=ALICE, username="alice", files=[attachment])
        await fake.wait_for(lambda: said(fake, "shown to me as pixels"))
    reply = fake.channel_log(DM)[-1].content
    assert "shot.png (image, image/png" in reply and "300×200 px" in reply
    assert fake.files.downloads == ["/attachments/30/9001/shot.png"]


async def test_expired_cdn_link_is_named(fake: FakeDiscord, tmp_path: Path) -> None:
    fake.files.valid_for = -60  # signed, but already expired
    attachment = fake.files.attachment(DM, 9002, "old.txt", b"hello", "text/plain")
    async with daemon(fake, tmp_path):
        await fake.user_message(DM, "read this", author_id=ALICE, files=[attachment])
        await fake.wait_for(lambda: said(fake, "old.txt: the file could not be downloaded"))
        await fake.wait_for(lambda: said(fake, "You said"))


async def test_too_large_as_reported_is_not_downloaded(fake: FakeDiscord, tmp_path: Path) -> None:
    attachment = fake.files.attachment(
        DM, 9003, "big.zip", b"PK", "application/zip", size=25_000_000
    )
    async with daemon(fake, tmp_path):
        await fake.user_message(DM, "", author_id=ALICE, files=[attachment])
        await fake.wait_for(lambda: said(fake, "file too large (25 MB, limit 20 MB)"))
    assert fake.files.downloads == []


async def test_file_out_with_text_and_over_the_limit(fake: FakeDiscord, tmp_path: Path) -> None:
    async with daemon(fake, tmp_path) as d:
        store = d.media.store
        small = await store.put_bytes(samples.png(), name="chart.png")
        big = await store.put_bytes(b"\0" * (11 * 1024 * 1024), name="disk.img")
        await d.outbound.deliver(
            OutboundMessage("discord", str(DM), "the **chart**", attachments=(small,))
        )
        await d.outbound.deliver(OutboundMessage("discord", str(DM), "", attachments=(big,)))
    [upload] = fake.files.uploads
    assert (upload.filename, upload.content, upload.data) == (
        "chart.png",
        "the **chart**",
        samples.png(),
    )
    assert "disk.img: file too large (11.5 MB, limit 10.5 MB)" in fake.channel_log(DM)[-1].content
