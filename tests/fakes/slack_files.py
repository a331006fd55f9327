"""Files on the fake Slack: files.info, url_private downloads, and the two-step upload.

Like Slack: `url_private(_download)` needs ``Authorization: Bearer <bot token>``; without it
Slack answers 200 with its HTML sign-in page (a classic trap). A file the bot may not read
(not shared with it, or no ``files:read`` scope) gives ``file_not_found`` from files.info and
403 from its URL. Uploads: files.getUploadURLExternal (filename, length) → POST the bytes to
the upload URL → files.completeUploadExternal (files, channel_id, initial_comment, thread_ts)
shares them in a message.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

SIGN_IN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


class FileError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class SlackFile:
    id: str
    name: str
    data: bytes
    mimetype: str
    readable: bool = True
    size: int | None = None
    subtype: str | None = None


@dataclass
class Upload:
    file_id: str
    filename: str
    data: bytes
    channel: str | None
    initial_comment: str | None
    thread_ts: str | None


class SlackFiles:
    def __init__(self, bot_token: str) -> None:
        self.bot_token = bot_token
        self.base = ""  # http://127.0.0.1:PORT, set when the fake starts
        self.files: dict[str, SlackFile] = {}
        self.downloads: list[str] = []
        self.uploads: list[Upload] = []
        self._pending: dict[str, dict[str, Any]] = {}  # upload URL issued, bytes maybe posted

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/files-pri/{file_id}/{name}", self._download),
            web.post("/upload/v1/{file_id}", self._upload),
        ]

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "files.info": self._info,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete,
        }

    def add(
        self,
        name: str,
        data: bytes,
        mimetype: str,
        *,
        readable: bool = True,
        size: int | None = None,
        subtype: str | None = None,
    ) -> dict[str, Any]:
        """Put a file on Slack; its object as a message event's ``files`` carries it."""
        file_id = "F" + secrets.token_hex(5).upper()
        self.files[file_id] = SlackFile(file_id, name, data, mimetype, readable, size, subtype)
        return self.object(self.files[file_id])

    def object(self, f: SlackFile) -> dict[str, Any]:
        url = f"{self.base}/files-pri/{f.id}/{f.name}"
        obj: dict[str, Any] = {
            "id": f.id,
            "name": f.name,
            "title": f.name,
            "mimetype": f.mimetype,
            "filetype": f.name.rpartition(".")[2] if "." in f.name else "binary",
            "size": len(f.data) if f.size is None else f.size,
            "url_private": url,
            "url_private_download": url + "?download=1",
        }
        if f.subtype:
            obj["subtype"] = f.subtype
        return obj

    def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        f = self.files.get(str(params.get("file") or ""))
        if f is None or not f.readable:
            raise FileError("file_not_found")
        return {"file": self.object(f)}

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        f = self.files.get(request.match_info["file_id"])
        if f is None:
            return web.Response(status=404, text="Not Found")
        if not f.readable:
            return web.Response(status=403, text="Forbidden")
        self.downloads.append(f.id)
        return web.Response(body=f.data, content_type=f.mimetype)

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename, length = params.get("filename"), params.get("length")
        if not filename or not str(length or "").isdigit():
            raise FileError("invalid_arguments")
        file_id = "F" + secrets.token_hex(5).upper()
        self._pending[file_id] = {"filename": filename, "length": int(str(length)), "data": None}
        return {"upload_url": f"{self.base}/upload/v1/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        pending = self._pending.get(request.match_info["file_id"])
        if pending is None:
            return web.Response(status=404, text="Not Found")
        data = await request.read()
        pending["data"] = data
        return web.Response(text=f"OK - {len(data)}")

    def _complete(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        items = json.loads(files) if isinstance(files, str) else files
        if not isinstance(items, list) or not items:
            raise FileError("invalid_arguments")
        done = []
        for item in items:
            pending = self._pending.pop(str(item.get("id")), None)
            if pending is None or pending["data"] is None:
                raise FileError("file_not_found")
            file_id = str(item["id"])
            self.uploads.append(
                Upload(
                    file_id,
                    pending["filename"],
                    pending["data"],
                    params.get("channel_id"),
                    params.get("initial_comment"),
                    params.get("thread_ts"),
                )
            )
            f = SlackFile(file_id, pending["filename"], pending["data"], "application/octet-stream")
            self.files[file_id] = f
            done.append({"id": file_id, "title": item.get("title") or f.name})
        return {"files": done}
