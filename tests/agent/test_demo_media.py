"""The demo model says what it received: kind, type, size, and an image's pixel size."""

from __future__ import annotations

from picobot.agent.demo import DemoLLM
from picobot.agent.llm import TextDelta


async def reply_to(content: object) -> str:
    parts = []
    async for event in DemoLLM(delay=0).stream([{"role": "user", "content": content}]):
        if isinstance(event, TextDelta):
            parts.append(event.text)
    return "".join(parts)


async def test_describes_an_image_and_a_file() -> None:
    content = [
        {
            "type": "text",
            "text": "[image: cat.png (image, image/png, 2 kB, 64×48 px)]\n\n"
            "[file: a.csv (file, text/csv, 8 bytes)]\n```\na,b\n```\n\nwhat are these?",
        },
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
    ]
    text = await reply_to(content)
    assert "- image: cat.png (image, image/png, 2 kB, 64×48 px)" in text
    assert "- file: a.csv (file, text/csv, 8 bytes)" in text
    assert "1 image shown to me as pixels" in text
    assert "> what are these?" in text


async def test_plain_text_is_echoed_as_before() -> None:
    text = await reply_to("hello")
    assert "You said:\n\n> hello" in text and "You sent" not in text


async def test_files_come_first_then_what_it_can_show() -> None:
    # "demo" in a caption does not hide the files: the showcase is offered, not played.
    text = await reply_to(
        "[file: notes.md (file, text/markdown, 27 bytes)]\n```\n# Notes\n\none\n```\n\ndemo?"
    )
    assert "- file: notes.md (file, text/markdown, 27 bytes)" in text
    assert "(I was given the text of a file too: 2 lines.)" in text
    assert "> demo?" in text and "> # Notes" not in text
    assert "| Platform |" not in text and "**demo**" in text  # CAN_SHOW, not SHOWCASE


async def test_a_voice_note_transcript_is_quoted_as_what_was_said() -> None:
    text = await reply_to("[voice note, transcribed: voice (voice, audio/ogg, 5 kB)]\nhi there")
    assert "- voice note, transcribed: voice (voice, audio/ogg, 5 kB)" in text
    assert "You said:\n\n> hi there" in text
