"""The fake OpenAI server's media endpoints: speech to text, text to speech, image generation.

POST /v1/audio/transcriptions   multipart `file` + `model` -> {"text": ...}; audio it cannot
                                recognise (by its first bytes) -> 400, like the real API
POST /v1/audio/speech           JSON `model`, `voice`, `input` -> Ogg/Opus bytes
POST /v1/images/generations     JSON `model`, `prompt`, `size` -> {"data": [{"b64_json"}]}
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image

AUDIO_MAGIC = (b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"RIFF", b"fLaC", b"\x1aE\xdf\xa3")
FORMATS = "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"


@dataclass
class Transcription:
    filename: str
    data: bytes
    model: str


def ogg_opus(size: int = 4096) -> bytes:
    """The start of an Ogg/Opus stream, padded: what /audio/speech answers."""
    head = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00"
    return head + b"\x00" * (size - len(head))


def png(width: int, height: int, color: str = "purple") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


class MediaEndpoints:
    """Mounted by `FakeOpenAI`; `authorized` and `bump` are the server's own."""

    def __init__(self, authorized: Callable[[web.Request], bool], bump: Callable[[], None]) -> None:
        self._authorized = authorized
        self._bump = bump
        self.transcript = "this is what the voice note says"
        self.refuse_audio = False  # answer 400 "Invalid file format" to every transcription
        self.transcriptions: list[Transcription] = []
        self.speech: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/audio/transcriptions", self._transcribe),
            web.post("/v1/audio/speech", self._speak),
            web.post("/v1/images/generations", self._generate),
        ]

    async def _transcribe(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        form = await request.post()
        upload, model = form.get("file"), form.get("model")
        if not isinstance(upload, web.FileField) or not isinstance(model, str):
            return _error(400, "'file' and 'model' are required")
        data = upload.file.read()
        self.transcriptions.append(Transcription(upload.filename, data, model))
        self._bump()
        recognised = data.startswith(AUDIO_MAGIC) or data[4:8] == b"ftyp"
        if self.refuse_audio or not recognised:
            return _error(400, f"Invalid file format. Supported formats: {FORMATS}")
        return web.json_response({"text": self.transcript})

    async def _speak(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        body = await request.json()
        if not body.get("input") or not body.get("model") or not body.get("voice"):
            return _error(400, "'model', 'voice' and 'input' are required")
        self.speech.append(body)
        self._bump()
        return web.Response(body=ogg_opus(), content_type="audio/ogg")

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        body = await request.json()
        if not body.get("prompt"):
            return _error(400, "'prompt' is required")
        self.images.append(body)
        self._bump()
        size = str(body.get("size") or "1024x1024")
        width, _, height = (size if size != "auto" else "1024x1024").partition("x")
        image = png(int(width), int(height))
        return web.json_response(
            {
                "created": int(time.time()),
                "data": [{"b64_json": base64.b64encode(image).decode("ascii")}],
            }
        )


def _error(status: int, message: str) -> web.Response:
    payload = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return web.json_response(payload, status=status)
