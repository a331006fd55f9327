"""Files in the web chat: multipart uploads on ``POST /api/messages`` and ``GET /api/media/{id}``.

An upload is streamed part by part into the media store (never held in memory); a file the store
refuses is reported with its one-line reason and the message goes on with the rest. Stored files
are served only from the store, by id; what a browser could run (HTML, SVG, scripts) is served
as a download, never inline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from picobot.core.channel import FileStore
from picobot.core.messages import Attachment
from picobot.media.errors import MediaError
from picobot.media.sniff import HEAD_BYTES, sniff

log = logging.getLogger("picobot.web")

MAX_FIELD = 256_000  # bytes of a text field, at least
MAX_FILES = 10
INLINE = ("image/png", "image/jpeg", "image/gif", "image/webp", "audio/", "video/")
CHUNK = 64 * 1024


class FormError(ValueError):
    """The upload is not a form we take; the message is the 400 answer."""


@dataclass
class Form:
    text: str = ""
    session: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}


async def read_form(request: web.Request, store: FileStore, max_text: int) -> Form:
    """The fields ``text`` and ``session``, and every part with a file name as a file.

    :raises FormError: not multipart, a text field too long, or too many files.
    """
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise FormError("the body must be multipart/form-data") from exc
    form = Form()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise FormError("nested multipart bodies are not supported")
        if part.filename is None:
            value = await _field(part, max(MAX_FIELD, 4 * max_text))  # 4: UTF-8's widest
            if part.name == "text":
                if len(value) > max_text:
                    raise FormError(f"text is longer than {max_text} characters")
                form.text = value
            elif part.name == "session":
                form.session = value
            continue
        if len(form.attachments) + len(form.rejected) >= MAX_FILES:
            raise FormError(f"at most {MAX_FILES} files per message")
        name = unquote(part.filename)  # some clients percent-encode (RFC 7578): "..%2F.."
        try:
            form.attachments.append(await store.put(_chunks(part), name=name))
        except MediaError as exc:
            log.info("web: refused an upload (%s)", type(exc).__name__)
            form.rejected.append({"name": name, "reason": exc.reason})
    return form


async def _field(part: BodyPartReader, limit: int) -> str:
    """A text field, read up to `limit` bytes (a longer one is refused, not buffered)."""
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise FormError(f"the field {part.name!r} is too long")
    return data.decode("utf-8", "replace")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


def media_response(store: FileStore, media_id: str) -> web.StreamResponse:
    """The stored file, typed from its bytes; 404 for an unknown or expired id."""
    try:
        path = store.path(media_id)
    except MediaError:
        return web.json_response({"error": "no such file (it may have expired)"}, status=404)
    with path.open("rb") as f:
        mime = sniff(f.read(HEAD_BYTES)).mime
    inline = mime.startswith(INLINE)
    headers = {
        "Content-Type": mime if inline else "application/octet-stream",
        "Content-Disposition": "inline" if inline else f'attachment; filename="{media_id[:12]}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=86400, immutable",  # content-addressed
    }
    return web.FileResponse(path, headers=headers)
