"""The fake Telegram's file endpoints, driven by the real python-telegram-bot."""

from __future__ import annotations

import pytest
import telegram
from telegram.error import BadRequest

from tests.fakes.fake_telegram import FakeTelegram
from tests.media import samples


async def test_get_file_and_download() -> None:
    async with FakeTelegram() as fake:
        big, small = samples.png(800, 600), samples.png(90, 60)
        update = fake.user_file(
            5, "photo", caption="look", photo_sizes=[(90, 60, small), (800, 600, big)]
        )
        doc = fake.user_file(5, "document", b"x", size=2_000_000_000, file_name="huge.iso")
        async with telegram.Bot(
            fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url
        ) as bot:
            message = telegram.Message.de_json(update["message"], bot)
            assert message is not None and message.caption == "look"
            assert [p.width for p in message.photo] == [90, 800]
            file = await bot.get_file(message.photo[-1].file_id)
            assert bytes(await file.download_as_bytearray()) == big
            with pytest.raises(BadRequest, match=r"(?i)file is too big"):
                await bot.get_file(doc["message"]["document"]["file_id"])


async def test_uploads() -> None:
    async with FakeTelegram() as fake:
        async with telegram.Bot(fake.token, base_url=fake.base_url) as bot:
            sent = await bot.send_photo(5, samples.png(), caption="<b>hi</b>", parse_mode="HTML")
            assert sent.photo and sent.caption == "hi"
            await bot.send_voice(5, samples.ogg_opus(), caption="said")
            await bot.send_document(5, b"abc", filename="a.txt")
            with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
                await bot.send_photo(5, b"not an image")
        assert [(u.kind, u.caption) for u in fake.files.uploads] == [
            ("photo", "hi"),
            ("voice", "said"),
            ("document", ""),
        ]
        assert fake.files.uploads[2].data == b"abc" and fake.files.uploads[2].filename == "a.txt"
        assert [m.text for m in fake.chat_log(5)] == ["hi", "said", ""]
