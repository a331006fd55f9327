"""Conversation history in Redis (cluster mode): any node can continue any conversation.

One list per session, ``picobot:history:<session>``, of JSON messages, oldest first. A turn's
messages are appended in one call, then the session is pruned to the newest `keep` (cut at a turn
boundary, as the SQLite store does). Only the owner of a chat's partition writes its history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis.asyncio import Redis

from picobot.cluster import key
from picobot.core.messages import Message
from picobot.storage.sessions import trim_start


class RedisSessionStore:
    """`HistoryStore` over Redis. The client belongs to the caller."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def load(self, session: str) -> list[Message]:
        items = await self.redis.lrange(key("history", session), 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in items]

    async def count(self, session: str) -> int:
        return int(await self.redis.llen(key("history", session)))  # type: ignore[misc]

    async def append(
        self, session: str, messages: Sequence[Message], *, keep: int | None = None
    ) -> None:
        name = key("history", session)
        if messages:
            await self.redis.rpush(  # type: ignore[misc]
                name, *(json.dumps(m, ensure_ascii=False) for m in messages)
            )
        if keep is not None:
            stored = await self.load(session)
            start = trim_start([str(m.get("role")) for m in stored], keep)
            if start:
                await self.redis.ltrim(name, start, -1)  # type: ignore[misc]

    async def clear(self, session: str) -> None:
        await self.redis.delete(key("history", session))
