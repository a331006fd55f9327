"""discord.py and network errors → `picobot.core.errors`, once, at the edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp

from channels.discord_sdk import discord
from picobot.core.errors import (
    BadRequest,
    ChannelError,
    ChannelTimeout,
    ChatNotFound,
    Forbidden,
    MessageTooLong,
    RateLimited,
)

DEFAULT_RETRY_AFTER = 10.0  # a 429 without `Via` (Cloudflare) carries no usable body


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn discord.py and network exceptions into `picobot.core.errors`, once, at the edge."""
    try:
        yield
    except discord.RateLimited as exc:  # a wait over max_ratelimit_timeout
        raise RateLimited(exc.retry_after) from exc
    except discord.HTTPException as exc:
        raise _from_http(exc) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ChannelTimeout(f"discord: {exc!r}") from exc


def _from_http(exc: discord.HTTPException) -> ChannelError:
    status, code, text = exc.status, exc.code, f"discord: {exc}"
    if status == 429:
        retry_after = exc.response.headers.get("Retry-After") if exc.response else None
        try:
            return RateLimited(float(retry_after or DEFAULT_RETRY_AFTER), text)
        except ValueError:
            return RateLimited(DEFAULT_RETRY_AFTER, text)
    if status >= 500:
        return ChannelTimeout(text)
    if status == 403:
        return Forbidden(text)
    if status == 404 and code == 10003:
        return ChatNotFound(text)
    if code == 50035 and "In content:" in exc.text and "length" in exc.text:
        return MessageTooLong(text)
    return BadRequest(text)


def snowflake(value: str, error: type[ChannelError]) -> int:
    try:
        return int(value)
    except ValueError:
        raise error(f"discord: {value!r} is not a Discord id") from None
