"""What the adapters do alike with files: stream a download, and name a file's kind.

Platform specifics (Telegram's getFile, Slack's files.info and bot token, Discord's signed CDN
links) stay in each adapter; this is only the HTTP part and the MIME type → kind rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from picobot.core.errors import BadRequest, ChannelTimeout, Forbidden
from picobot.core.messages import AttachmentKind

CHUNK = 64 * 1024
# A large file takes as long as it takes; a stalled one is given up after a minute.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)


def kind_of(mime: str, *, voice: bool = False) -> AttachmentKind:
    """The kind a platform's MIME type suggests (the store checks the bytes later)."""
    if voice:
        return AttachmentKind.VOICE
    major = mime.partition("/")[0]
    if major == "image":
        return AttachmentKind.IMAGE
    if major == "audio":
        return AttachmentKind.AUDIO
    if major == "video":
        return AttachmentKind.VIDEO
    return AttachmentKind.FILE


async def stream_url(
    session: aiohttp.ClientSession,
    url: str,
    platform: str,
    *,
    headers: Mapping[str, str] | None = None,
    expect_html: bool = False,
) -> AsyncIterator[bytes]:
    """The body of ``GET url``, in chunks; the caller stops reading at its size limit.

    The URL is never put in an error (it may hold a token).

    :raises Forbidden: 401/403, or an HTML page where a file was expected (a sign-in page).
    :raises BadRequest: 404 and other refusals: the file is gone.
    :raises ChannelTimeout: 5xx, network errors, timeouts.
    """
    try:
        async with session.get(url, headers=headers, timeout=TIMEOUT) as response:
            status = response.status
            if status in (401, 403):
                raise Forbidden(f"{platform}: the file may not be read (HTTP {status})")
            if status >= 500:
                raise ChannelTimeout(f"{platform}: file download answered HTTP {status}")
            if status != 200:
                raise BadRequest(f"{platform}: the file is not available (HTTP {status})")
            if response.content_type == "text/html" and not expect_html:
                raise Forbidden(f"{platform}: got a sign-in page instead of the file")
            async for chunk in response.content.iter_chunked(CHUNK):
                yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ChannelTimeout(f"{platform}: file download failed ({type(exc).__name__})") from None
