"""Attachments in a turn: the user's files made ready for the model, and voice replies.

The session history keeps what `prepare` wrote: text (captions, transcripts, inlined files,
descriptions) and, for images, references to the store under the message's ``attachments``
key. `for_model` turns those references into ``image_url`` parts at each model call, so the
history stays small and an image can be looked at again while the store keeps it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from picobot.core.messages import (
    Attachment,
    AttachmentKind,
    InboundMessage,
    Message,
    OutboundMessage,
    reply_to,
)
from picobot.media.errors import MediaError
from picobot.media.inbound import MediaIntake, Prepared
from picobot.media.store import MediaStore

log = logging.getLogger("picobot.media")

Publish = Callable[[OutboundMessage], Awaitable[object]]
Speak = Callable[[str], Awaitable[bytes]]
CACHED_IMAGES = 8  # data URLs kept between the model calls of a turn


class AgentMedia:
    """What the agent does with files; `speak` set means voice notes are answered by voice."""

    def __init__(self, intake: MediaIntake, *, speak: Speak | None = None) -> None:
        self.intake = intake
        self.store: MediaStore = intake.store
        self.speak = speak
        self._urls: OrderedDict[str, str] = OrderedDict()

    async def prepare(self, inbound: InboundMessage, publish: Publish | None = None) -> Message:
        """The user message for `inbound`; refused files are named to the user at once."""
        prepared: Prepared = await self.intake.prepare(inbound)
        if publish is not None:
            for note in prepared.notes:
                await publish(reply_to(inbound, note))
        message: Message = {"role": "user", "content": prepared.text}
        if prepared.images:
            message["attachments"] = [a.to_json() for a in prepared.images]
        if prepared.voice:
            message["voice"] = True
        return message

    async def store_images(self, urls: Sequence[str]) -> tuple[Attachment, ...]:
        """Images a tool returned as ``data:`` URLs, stored so they can be sent to the chat
        (others, e.g. https: URLs, and anything the store refuses are left out)."""
        stored: list[Attachment] = []
        for n, url in enumerate(urls, 1):
            head, _, data = url.partition(",")
            if not (head.startswith("data:") and head.endswith(";base64")):
                continue
            try:
                raw = base64.b64decode(data, validate=True)
                stored.append(await self.store.put_bytes(raw, name=f"tool-image-{n}"))
            except (ValueError, MediaError) as exc:
                log.info("a tool's image was not kept: %s", type(exc).__name__)
        return tuple(stored)

    async def for_model(self, messages: Sequence[Message]) -> list[Message]:
        """`messages` as the API takes them: image references become ``image_url`` parts."""
        result: list[Message] = []
        for message in messages:
            refs = message.get("attachments")
            if not refs and "voice" not in message:
                result.append(message)
                continue
            clean = {k: v for k, v in message.items() if k not in ("attachments", "voice")}
            if refs:
                parts: list[dict[str, Any]] = []
                if clean.get("content"):
                    parts.append({"type": "text", "text": clean["content"]})
                for ref in refs:
                    parts.append(await self._image_part(Attachment.from_json(ref)))
                clean["content"] = parts
            result.append(clean)
        return result

    async def _image_part(self, image: Attachment) -> dict[str, Any]:
        key = image.id or ""
        url = self._urls.get(key)
        if url is None:
            try:
                from picobot.media import images  # Pillow: loaded when the first image comes

                path = self.store.path(key)
                url = await asyncio.to_thread(images.data_url, path, image.mime)
            except (MediaError, OSError):
                return {"type": "text", "text": f"[image {image.name} is no longer available]"}
            self._urls[key] = url
            while len(self._urls) > CACHED_IMAGES:
                self._urls.popitem(last=False)
        self._urls.move_to_end(key)
        return {"type": "image_url", "image_url": {"url": url}}

    async def voice_reply(self, inbound: InboundMessage, text: str, publish: Publish) -> None:
        """Send `text` as a voice note too (when the user sent one and replies by voice are on).

        A failure is logged; the text reply is unaffected.
        """
        if self.speak is None or not text.strip():
            return
        try:
            audio = await self.speak(text)
            voice = await self.store.put_bytes(audio, kind=AttachmentKind.VOICE)
        except MediaError as exc:
            log.warning("no voice reply in %s: %s", inbound.channel, exc.reason)
            return
        await publish(replace(reply_to(inbound, ""), attachments=(voice,)))
