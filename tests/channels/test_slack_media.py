"""Slack files: files.info + url_private with the bot token in, the two-step upload out,
through the real daemon and slack-bolt/slack_sdk against FakeSlack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from picobot.agent.demo import DemoLLM
from picobot.core.messages import OutboundMessage
from picobot.runtime.daemon import Daemon
from tests.channels.test_slack_channel import make_config
from tests.fakes.fake_slack import FakeSlack
from tests.media import samples


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(enforce_limits=False) as server:
        yield server


def said(fake: FakeSlack, needle: str) -> bool:
    return any(needle in m.text for m in fake.channel_log("D1"))


async def test_image_file_is_downloaded_with_the_bot_token(fake: FakeSlack, tmp_path: Path) -> None:
    image = fake.files.add("photo.jpg", samples.jpeg(320, 240), "image/jpeg")
    async with Daemon(make_config(fake, tmp_path), llm=DemoLLM(delay=0)):
        await fake.push_event(fake.dm_event("U1", "look", files=[image]))
        await fake.wait_for(lambda: said(fake, "shown to me as pixels"))
    assert "photo.jpg (image, image/jpeg" in fake.channel_log("D1")[-1].text
    assert "320×240 px" in fake.channel_log("D1")[-1].text
    assert fake.files.downloads == [image["id"]]


async def test_a_file_the_bot_may_not_read_is_named(fake: FakeSlack, tmp_path: Path) -> None:
    secret = fake.files.add("secret.pdf", samples.pdf(), "application/pdf", readable=False)
    async with Daemon(make_config(fake, tmp_path), llm=DemoLLM(delay=0)):
        await fake.push_event(fake.dm_event("U1", "summarise", files=[secret]))
        await fake.wait_for(lambda: said(fake, "secret.pdf: the bot is not allowed to read"))
        await fake.wait_for(lambda: said(fake, "> summarise"))
    assert fake.files.downloads == []


async def test_voice_clip_is_a_voice_note(fake: FakeSlack, tmp_path: Path) -> None:
    clip = fake.files.add(
        "clip.webm", b"\x1aE\xdf\xa3" + b"\0" * 64, "audio/webm", subtype="slack_audio"
    )
    async with Daemon(make_config(fake, tmp_path), llm=DemoLLM(delay=0)) as daemon:
        inbound = daemon.channels["slack"]._inbound(  # the translation alone
            {"event": fake.dm_event("U1", "", files=[clip]), "event_id": "Ev1"}
        )
    assert inbound is not None and [a.kind for a in inbound.attachments] == ["voice"]


async def test_file_out_through_the_two_step_upload(fake: FakeSlack, tmp_path: Path) -> None:
    async with Daemon(make_config(fake, tmp_path), llm=DemoLLM(delay=0)) as daemon:
        report = await daemon.media.store.put_bytes(b"a,b\n1,2\n", name="report.csv")
        msg = OutboundMessage(
            "slack", "C1", "Here is *the report*", thread="111.222", attachments=(report,)
        )
        await daemon.outbound.deliver(msg)
    [upload] = fake.files.uploads
    assert (upload.filename, upload.data, upload.channel) == ("report.csv", b"a,b\n1,2\n", "C1")
    assert upload.initial_comment == "Here is _the report_" and upload.thread_ts == "111.222"
    methods = [c.method for c in fake.calls if c.method.startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.completeUploadExternal"]
