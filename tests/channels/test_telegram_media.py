"""Files through the whole daemon: real python-telegram-bot and openai against the fakes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from picobot.config import Config, parse_config
from picobot.core.messages import OutboundMessage
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.fakes.fake_telegram import FakeTelegram
from tests.media import samples

CHAT = 42


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def make_config(telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path, **top: Any) -> Config:
    data = telegram.picobot_config(tmp_path, placeholder={"enabled": False})
    data["llm"] = {
        "provider": "openai",
        "base_url": openai.base_url,
        "api_key": openai.api_key,
        "model": openai.model,
        "max_retries": 0,
    }
    data["dispatch"] = {"drain_timeout": 1.0}
    return parse_config({**data, **top}, env={})


def said(chat_id: int, needle: str) -> Callable[[FakeTelegram], bool]:
    def check(fake: FakeTelegram) -> bool:
        return any(needle in m.text for m in fake.chat_log(chat_id))

    check.__name__ = f"said({chat_id}, {needle!r})"
    return check


def user_content(request: dict[str, Any]) -> Any:
    return [m for m in request["messages"] if m["role"] == "user"][-1]["content"]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p["type"] == "text")


async def test_photo_reaches_the_model_as_an_image(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    small, large = samples.png(90, 60), samples.png(1280, 960, "green")
    async with Daemon(make_config(telegram, openai, tmp_path)):
        telegram.user_file(
            CHAT,
            "photo",
            caption="what is this?",
            photo_sizes=[(90, 60, small), (1280, 960, large)],
        )
        await telegram.wait_for(said(CHAT, "You said"))
    content = user_content(openai.last_request)
    images = [p for p in content if p["type"] == "image_url"]
    assert len(images) == 1
    url = images[0]["image_url"]["url"]
    assert url == "data:image/png;base64," + base64.b64encode(large).decode()
    assert "what is this?" in text_of(content)
    assert "1280×960 px" in text_of(content)


async def test_the_image_stays_in_the_history_as_a_reference(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    async with Daemon(make_config(telegram, openai, tmp_path)):
        telegram.user_file(CHAT, "photo", samples.png(), caption="first")
        await telegram.wait_for(said(CHAT, "first"))
        telegram.user_message(CHAT, "and again?")
        await telegram.wait_for(said(CHAT, "and again?"))
    first = openai.last_request["messages"][1]
    assert any(p["type"] == "image_url" for p in first["content"])
    stored = (tmp_path / "sessions.db").read_bytes()
    assert b"base64" not in stored  # references, not bytes


async def test_voice_note_is_transcribed(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    async with Daemon(make_config(telegram, openai, tmp_path)):
        telegram.user_file(CHAT, "voice", samples.ogg_opus(), mime_type="audio/ogg")
        await telegram.wait_for(said(CHAT, "You said"))
    text = text_of(user_content(openai.last_request))
    assert openai.media.transcript in text and "voice note" in text
    assert openai.media.transcriptions[0].data == samples.ogg_opus()


async def test_voice_reply_when_asked_for(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(telegram, openai, tmp_path, media={"voice_replies": True})
    async with Daemon(config):
        telegram.user_file(CHAT, "voice", samples.ogg_opus(), mime_type="audio/ogg")
        await telegram.wait_for(lambda f: any(u.kind == "voice" for u in f.files.uploads))
        await telegram.wait_for(said(CHAT, "You said"))
    assert openai.media.speech[0]["input"].startswith("You said")
    assert openai.media.speech[0]["response_format"] == "opus"


async def test_refused_transcription_is_named_and_the_turn_goes_on(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.media.refuse_audio = True
    async with Daemon(make_config(telegram, openai, tmp_path)):
        telegram.user_file(CHAT, "voice", samples.ogg_opus(), caption="listen")
        await telegram.wait_for(said(CHAT, "could not be transcribed"))
        await telegram.wait_for(said(CHAT, "You said"))
    assert "listen" in text_of(user_content(openai.last_request))


async def test_generate_image_sends_a_photo(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.script(
        Reply(tool_calls=[ToolCall("generate_image", {"prompt": "a red fox", "size": "256x256"})]),
        Reply(text="Here is your fox."),
    )
    config = make_config(telegram, openai, tmp_path, images={"enabled": True})
    async with Daemon(config):
        telegram.user_message(CHAT, "draw a fox")
        await telegram.wait_for(said(CHAT, "Here is your fox."))
        await telegram.wait_for(lambda f: any(u.kind == "photo" for u in f.files.uploads))
    assert openai.media.images[0]["prompt"] == "a red fox"
    tool_result = openai.last_request["messages"][-1]
    assert tool_result["role"] == "tool" and "256×256 px" in tool_result["content"]


@pytest.mark.parametrize(
    ("media", "reason"),
    [
        (
            {"size": 2_000_000_000, "file_name": "movie.mkv"},
            "file too large (2000 MB, limit 20 MB)",
        ),
        ({"file_name": "empty.txt", "data": b""}, "empty file"),
        ({"file_name": "cat.png", "data": b"MZ\x90\x00" + b"\0" * 64}, "content does not match"),
        ({"file_name": "../../etc/passwd", "data": b"root:x:0:0"}, "unsafe file name"),
        ({"file_name": "broken.png", "data": samples.png()[:50]}, "not a valid image"),
    ],
)
async def test_bad_files_get_a_one_line_reason(
    telegram: FakeTelegram,
    openai: FakeOpenAI,
    tmp_path: Path,
    media: dict[str, Any],
    reason: str,
) -> None:
    data = media.pop("data", b"x")
    async with Daemon(make_config(telegram, openai, tmp_path)):
        telegram.user_file(CHAT, "document", data, caption="here", **media)
        await telegram.wait_for(said(CHAT, reason))
        await telegram.wait_for(said(CHAT, "You said"))
    assert "here" in text_of(user_content(openai.last_request))
    assert not any(c.method == "getFile" for c in telegram.calls) or media.get("size") is None
    assert files_written(tmp_path) == []


def files_written(data_dir: Path) -> list[Path]:
    """Files other than the databases and the lock: none, when every file was refused."""
    own = ("sessions.db", "outbox.db", "schedule.db", "picobot.lock")
    return [p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(own)]


async def test_pdf_text_is_inlined(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    async with Daemon(make_config(telegram, openai, tmp_path)):
        telegram.user_file(CHAT, "document", samples.pdf("Invoice 1234"), file_name="inv.pdf")
        await telegram.wait_for(said(CHAT, "You said"))
    text = text_of(user_content(openai.last_request))
    assert "inv.pdf" in text and "Invoice 1234" in text


async def send_file(daemon: Daemon, data: bytes, name: str, text: str = "") -> list[str]:
    stored = await daemon.media.store.put_bytes(data, name=name)
    msg = OutboundMessage("telegram", str(CHAT), text, attachments=(stored,))
    return await daemon.outbound.deliver(msg)


async def test_outbound_photo_with_caption(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    async with Daemon(make_config(telegram, openai, tmp_path)) as daemon:
        await send_file(daemon, samples.png(), "chart.png", "Here is **the chart**")
    [upload] = telegram.files.uploads
    assert (upload.kind, upload.caption, upload.filename) == (
        "photo",
        "Here is the chart",
        "chart.png",
    )
    assert upload.params["parse_mode"] == "HTML"
    assert [m.text for m in telegram.chat_log(CHAT)] == ["Here is the chart"]


async def test_long_text_goes_after_the_file(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    text = "word " * 400  # over the 1024-character caption limit
    async with Daemon(make_config(telegram, openai, tmp_path)) as daemon:
        await send_file(daemon, b"a,b\n1,2\n", "data.csv", text)
    [upload] = telegram.files.uploads
    assert upload.kind == "document" and upload.caption == ""
    assert telegram.chat_log(CHAT)[0].text.startswith("word word")


async def test_file_over_the_platform_limit_becomes_a_note(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(telegram, openai, tmp_path, media={"max_bytes": 60_000_000})
    big = b"\0" * 51_000_000
    async with Daemon(config) as daemon:
        await send_file(daemon, big, "disk.img", "the image")
    assert telegram.files.uploads == []
    [note] = telegram.chat_log(CHAT)
    assert "disk.img: file too large (51 MB, limit 50 MB)" in note.text and "the image" in note.text


async def test_lost_answer_to_an_upload_duplicates_it_at_most_once(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    telegram.fail_next("sendPhoto", "drop_after")  # Telegram took it; the answer is lost
    async with Daemon(make_config(telegram, openai, tmp_path)) as daemon:
        await send_file(daemon, samples.png(), "p.png")
    assert 1 <= len(telegram.files.uploads) <= 2
    assert telegram.calls[-1].method == "sendPhoto" and telegram.calls[-1].status == 200


async def test_a_photo_telegram_refuses_goes_as_a_document(
    telegram: FakeTelegram, openai: FakeOpenAI, tmp_path: Path
) -> None:
    async with Daemon(make_config(telegram, openai, tmp_path)) as daemon:
        await send_file(daemon, samples.png(9000, 300), "panorama.png", "wide")
    [upload] = telegram.files.uploads
    assert (upload.kind, upload.filename, upload.caption) == ("document", "panorama.png", "wide")
    refused = [c for c in telegram.calls if c.method == "sendPhoto"]
    assert [c.description for c in refused] == ["Bad Request: PHOTO_INVALID_DIMENSIONS"]
