"""MCP ↔ OpenAI: tool names that cannot collide, and tool results the model can read."""

from __future__ import annotations

import hashlib
import json
import re

import mcp_types as types

from picobot.agent.tools import ToolResult

SEPARATOR = "__"
MAX_NAME = 64  # OpenAI: ^[a-zA-Z0-9_-]{1,64}$
MAX_IMAGE_CHARS = 4 * 1024 * 1024  # base64 characters of one image; larger ones are left out
MAX_IMAGES = 4

_INVALID = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """``server__tool``, with characters OpenAI refuses replaced and, when too long, cut and
    suffixed with a hash of the original, so distinct tools keep distinct names."""
    name = f"{server}{SEPARATOR}{_INVALID.sub('_', tool)}"
    if len(name) <= MAX_NAME and name == f"{server}{SEPARATOR}{tool}":
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def to_result(result: types.CallToolResult) -> ToolResult:
    """Text parts joined in the tool message; images as data URLs for a following user
    message; other parts named, not inlined."""
    texts: list[str] = []
    images: list[str] = []
    for part in result.content:
        if isinstance(part, types.TextContent):
            texts.append(part.text)
        elif isinstance(part, types.ImageContent):
            if len(images) >= MAX_IMAGES or len(part.data) > MAX_IMAGE_CHARS:
                texts.append(f"[image left out: {part.mime_type}, too many or too large]")
            else:
                images.append(f"data:{part.mime_type};base64,{part.data}")
                texts.append(f"[image {len(images)}: {part.mime_type}, shown below]")
        elif isinstance(part, types.AudioContent):
            texts.append(f"[audio left out: {part.mime_type}]")
        elif isinstance(part, types.EmbeddedResource):
            resource = part.resource
            if isinstance(resource, types.TextResourceContents):
                texts.append(resource.text)
            else:
                texts.append(f"[binary resource left out: {resource.uri}]")
        elif isinstance(part, types.ResourceLink):
            texts.append(f"[resource: {part.uri}]")
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(texts) or "(no output)"
    if result.is_error:
        text = f"Error: {text}"
    return ToolResult(text, error=result.is_error, images=tuple(images))
