"""Files on the fake Telegram: getFile + download, and sendPhoto/sendDocument/sendVoice/sendAudio.

Like the real Bot API: getFile refuses files over 20 MB ("file is too big"); a download is
``GET <base_file_url><token>/<file_path>``; uploads are multipart, photos at most 10 MB and
other files 50 MB (413 otherwise); a photo that is not an image fails to process.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from tests.fakes.telegram_rules import ApiError

MAX_DOWNLOAD = 20_000_000  # getFile's limit for bots on api.telegram.org
MAX_PHOTO_UPLOAD = 10_000_000
MAX_UPLOAD = 50_000_000
UPLOAD_KINDS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVoice": "voice",
    "sendAudio": "audio",
}


@dataclass
class StoredFile:
    file_id: str
    unique_id: str
    data: bytes
    path: str
    size: int  # what Telegram reports (a test may claim more than `data` holds)


@dataclass
class Upload:
    """A file the bot sent."""

    chat_id: int
    message_id: int
    kind: str  # photo | document | voice | audio
    data: bytes
    filename: str | None
    caption: str | None
    params: dict[str, Any] = field(default_factory=dict)


class TelegramFiles:
    def __init__(self, token: str) -> None:
        self.token = token
        self.files: dict[str, StoredFile] = {}
        self.downloads: list[str] = []  # file_ids downloaded, in order
        self.uploads: list[Upload] = []

    def add(self, data: bytes, *, size: int | None = None, ext: str = "bin") -> StoredFile:
        file_id = "F" + secrets.token_hex(10)
        stored = StoredFile(
            file_id,
            "U" + file_id[1:9],
            data,
            f"documents/{file_id}.{ext}",
            len(data) if size is None else size,
        )
        self.files[file_id] = stored
        return stored

    def object(self, stored: StoredFile, **extra: Any) -> dict[str, Any]:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": stored.size,
            **extra,
        }

    async def get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self.files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        return self.object(stored, file_path=stored.path)

    async def download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        stored = next((f for f in self.files.values() if f.path == path), None)
        if stored is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        self.downloads.append(stored.file_id)
        response = web.StreamResponse(headers={"Content-Length": str(len(stored.data))})
        await response.prepare(request)
        for start in range(0, len(stored.data), 64 * 1024):
            await response.write(stored.data[start : start + 64 * 1024])
        await response.write_eof()
        return response

    def take_upload(self, method: str, params: dict[str, Any]) -> tuple[str, bytes, str | None]:
        kind = UPLOAD_KINDS[method]
        value = params.get(kind)
        if not isinstance(value, dict) or "data" not in value:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        data: bytes = value["data"]
        limit = MAX_PHOTO_UPLOAD if kind == "photo" else MAX_UPLOAD
        if len(data) > limit:
            raise ApiError(413, "Request Entity Too Large")
        if kind == "photo":
            try:
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
                    width, height = img.size
            except (UnidentifiedImageError, OSError):
                raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        return kind, data, value.get("file")

    def media_json(self, upload: Upload) -> dict[str, Any]:
        """The media field of the Message returned for an upload."""
        stored = self.add(upload.data)
        if upload.kind == "photo":
            return {"photo": [self.object(stored, width=1, height=1)]}
        if upload.kind == "voice":
            return {"voice": self.object(stored, duration=1)}
        if upload.kind == "audio":
            return {"audio": self.object(stored, duration=1)}
        return {"document": self.object(stored, file_name=upload.filename or "file")}


def file_message(
    files: TelegramFiles,
    kind: str,
    data: bytes,
    *,
    size: int | None = None,
    file_name: str | None = None,
    mime_type: str | None = None,
    photo_sizes: list[tuple[int, int, bytes]] | None = None,
) -> dict[str, Any]:
    """The media fields of an inbound message: `photo` (several sizes), `document`, `voice`,
    `audio`, `video`, `video_note`."""
    if kind == "photo":
        sizes = photo_sizes or [(1, 1, data)]
        return {"photo": [files.object(files.add(d), width=w, height=h) for w, h, d in sizes]}
    stored = files.add(data, size=size)
    extra: dict[str, Any] = {}
    if kind in ("voice", "audio", "video", "video_note"):
        extra["duration"] = 3
    if kind in ("video",):
        extra.update(width=320, height=240)
    if kind == "video_note":
        extra["length"] = 240
    if file_name is not None:
        extra["file_name"] = file_name
    if mime_type is not None:
        extra["mime_type"] = mime_type
    return {kind: files.object(stored, **extra)}
