"""OpenAI-compatible media endpoints: transcription (STT), speech (TTS), image generation.

Each call maps the SDK's errors to a `MediaError` whose reason the user can read; none is
retried here (the user can send the file again).
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import openai
from openai import AsyncOpenAI

from picobot.core.messages import Attachment
from picobot.media.errors import MediaError, TranscriptionFailed

log = logging.getLogger("picobot.media")

MAX_SPEECH_CHARS = 4096  # /audio/speech's input limit


class OpenAIMedia:
    """One client for the three endpoints. Resource handling: `aclose()` closes it."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        stt_model: str = "whisper-1",
        tts_model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        image_model: str = "gpt-image-1",
        image_size: str = "1024x1024",
        timeout: float = 120.0,
    ) -> None:
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "no-key", timeout=timeout, max_retries=1
        )
        self.stt_model, self.tts_model, self.voice = stt_model, tts_model, voice
        self.image_model, self.image_size = image_model, image_size

    async def aclose(self) -> None:
        await self._client.close()

    async def transcribe(self, path: Path, attachment: Attachment) -> str:
        """:raises TranscriptionFailed: the endpoint refused the audio or failed."""
        with _translate(TranscriptionFailed, "the voice note could not be transcribed"):
            with path.open("rb") as f:
                result = await self._client.audio.transcriptions.create(
                    model=self.stt_model, file=(attachment.name or "audio.ogg", f)
                )
        return result.text

    async def speak(self, text: str) -> bytes:
        """Ogg/Opus audio of `text` (cut at the endpoint's input limit).

        :raises MediaError: the endpoint failed.
        """
        with _translate(MediaError, "no voice reply"):
            response = await self._client.audio.speech.create(
                model=self.tts_model,
                voice=self.voice,
                input=text[:MAX_SPEECH_CHARS],
                response_format="opus",
            )
        return response.content

    async def generate_image(self, prompt: str, size: str | None = None) -> bytes:
        """PNG/JPEG bytes of one image (`b64_json`, or fetched from `url`).

        :raises MediaError: the endpoint refused the prompt or failed.
        """
        with _translate(MediaError, "the image could not be generated"):
            result = await self._client.images.generate(
                model=self.image_model,
                prompt=prompt,
                size=(size or self.image_size),
                n=1,
            )
            item = result.data[0] if result.data else None
            if item is not None and item.b64_json:
                return base64.b64decode(item.b64_json)
            if item is not None and item.url:
                return await _fetch(item.url)
        raise MediaError("the image service answered without an image")


async def _fetch(url: str) -> bytes:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            response.raise_for_status()
            return await response.read()
    except aiohttp.ClientError as exc:
        raise MediaError("the generated image could not be downloaded") from exc


@contextlib.contextmanager
def _translate(error: type[MediaError], what: str) -> Iterator[None]:
    try:
        yield
    except openai.APIStatusError as exc:
        log.warning("%s: HTTP %s", what, exc.status_code)
        message = exc.message if exc.status_code < 500 else "the service failed"
        raise error(f"{what}: {message}"[:200]) from exc
    except openai.OpenAIError as exc:
        log.warning("%s: %s", what, type(exc).__name__)
        raise error(f"{what}: the service is unreachable") from exc
