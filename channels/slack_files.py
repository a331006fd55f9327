"""Files on Slack: downloads (files.info, then the private URL) and uploads (files_upload_v2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from channels.downloads import stream_url
from channels.slack_errors import error_code, translate_errors
from picobot.core.channel import Rendered
from picobot.core.errors import BadRequest, Forbidden
from picobot.core.messages import Attachment


async def download(
    client: AsyncWebClient,
    session: aiohttp.ClientSession | None,
    bot_token: str,
    attachment: Attachment,
) -> AsyncIterator[bytes]:
    """files.info for a current URL, then ``url_private_download`` with the bot token.

    :raises Forbidden: the bot may not read the file (not shared with it, no files:read).
    """
    with translate_errors():
        try:
            info = await client.files_info(file=attachment.source or "")
        except SlackApiError as exc:
            if error_code(exc) in ("file_not_found", "file_deleted"):
                raise Forbidden(f"slack files.info: {error_code(exc)}") from exc
            raise
    file = info.get("file") or {}
    url = file.get("url_private_download") or file.get("url_private")
    if not url or session is None:
        raise BadRequest("slack: the file has no download URL")
    headers = {"Authorization": f"Bearer {bot_token}"}
    html = str(file.get("mimetype", "")).startswith("text/html")
    async for chunk in stream_url(session, url, "slack", headers=headers, expect_html=html):
        yield chunk


async def upload(
    client: AsyncWebClient,
    chat_id: str,
    path: Path,
    attachment: Attachment,
    *,
    caption: Rendered | None,
    thread_ts: str | None,
) -> str:
    """files.getUploadURLExternal + upload + files.completeUploadExternal (slack_sdk's
    `files_upload_v2`); the file's id, as Slack gives no message ts for it."""
    name = attachment.name or f"{attachment.kind}"
    with translate_errors():
        response = await client.files_upload_v2(
            channel=chat_id,
            file=str(path),
            filename=name,
            title=name,
            initial_comment=caption.text if caption else None,
            thread_ts=thread_ts,
        )
    file = response.get("file") or {}
    return str(file.get("id", ""))
