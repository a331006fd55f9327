"""`generate_image`: an image from a prompt (OpenAI-compatible /images/generations), returned
as a file that the turn sends to the chat; the model is told its size and that it was sent."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from picobot.agent.tools import Tool, ToolContext, ToolError, ToolResult
from picobot.core.messages import AttachmentKind
from picobot.media.errors import MediaError
from picobot.media.store import MediaStore

Generate = Callable[[str, str | None], Awaitable[bytes]]
MAX_PROMPT = 4000


def generate_image_tool(generate: Generate, store: MediaStore) -> Tool:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        prompt = str(args.get("prompt", "")).strip()
        if not prompt:
            raise ToolError("prompt must not be empty")
        size = args.get("size")
        if size is not None and not re.fullmatch(r"auto|\d+x\d+", str(size)):
            raise ToolError("size must look like 1024x1024")
        try:
            data = await generate(prompt[:MAX_PROMPT], None if size is None else str(size))
            image = await store.put_bytes(data, kind=AttachmentKind.IMAGE)
        except MediaError as exc:
            raise ToolError(exc.reason) from None
        return ToolResult(f"An image of {image.width}×{image.height} px.", attachments=(image,))

    return Tool(
        "generate_image",
        "Create an image from a text description and send it to the user in this chat.",
        handler,
        {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": "What the image shows, in detail."},
                "size": {"type": "string", "description": "e.g. 1024x1024 (optional)."},
            },
            "required": ["prompt"],
        },
    )
