"""Files on the fake Discord: attachments on the CDN (signed, expiring URLs) and uploads.

Like Discord: an attachment's `url` carries ``ex`` (expiry, hex seconds), ``is`` and ``hm`` (a
signature); without a valid signature, or past ``ex``, the CDN answers 404 "This content is no
longer available.". Uploads are multipart (`payload_json` + ``files[n]``); over the size limit
(10 MiB on an unboosted server) the API answers 413 with code 40005.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

UPLOAD_LIMIT = 10 * 1024 * 1024
_KEY = b"fake-cdn-key"


@dataclass
class Upload:
    channel_id: int
    message_id: int
    filename: str
    data: bytes
    content: str


@dataclass
class CdnFile:
    filename: str
    data: bytes
    content_type: str | None
    size: int  # what the payload reports


class DiscordFiles:
    def __init__(self) -> None:
        self.base = ""  # the fake's http_url, set when it starts
        self.cdn: dict[str, CdnFile] = {}  # path -> file
        self.downloads: list[str] = []
        self.uploads: list[Upload] = []
        self.upload_limit = UPLOAD_LIMIT
        self.valid_for = 24 * 3600.0

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/attachments/{channel}/{attachment}/{filename}", self._download)]

    def attachment(
        self,
        channel_id: int,
        attachment_id: int,
        filename: str,
        data: bytes,
        content_type: str | None,
        size: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The attachment object of a message payload, its file put on the CDN."""
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        self.cdn[path] = CdnFile(filename, data, content_type, len(data) if size is None else size)
        expires = f"{int(time.time() + self.valid_for):x}"
        url = f"{self.base}{path}?ex={expires}&is={int(time.time()):x}&hm={_sign(path, expires)}&"
        payload: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": self.cdn[path].size,
            "url": url,
            "proxy_url": url,
            **extra,
        }
        if content_type:
            payload["content_type"] = content_type
        return payload

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        stored = self.cdn.get(path)
        expires = request.query.get("ex", "")
        signed = hmac.compare_digest(request.query.get("hm", ""), _sign(path, expires))
        if stored is None or not signed or int(expires or "0", 16) < time.time():
            return web.Response(status=404, text="This content is no longer available.")
        self.downloads.append(path)
        return web.Response(body=stored.data, content_type=stored.content_type or None)


def _sign(path: str, expires: str) -> str:
    return hmac.new(_KEY, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]
