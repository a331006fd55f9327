"""Conversation history in Redis (cluster mode): any node can continue any conversation.

    picobot:history:<session>   list of JSON messages, oldest first (notes: role "note")
    picobot:session:<session>   hash: title, created, updated
    picobot:sessions            sorted set: session -> updated (conversation lists)

Same meaning as the SQLite `SessionStore`: notes are seen by the user, never by the model; a
turn's messages are appended, then the session is pruned to the newest `keep` model messages,
cut at a turn boundary. Only the owner of a chat's partition writes its history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from picobot.cluster import key
from picobot.core.messages import Message
from picobot.storage.sessions import SessionInfo, title_of, trim_start

SESSIONS = key("sessions")


class RedisSessionStore:
    """`HistoryStore` over Redis. The client belongs to the caller."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def transcript(self, session: str) -> list[Message]:
        items = await self.redis.lrange(key("history", session), 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in items]

    async def load(self, session: str) -> list[Message]:
        return [m for m in await self.transcript(session) if not m.get("note")]

    async def count(self, session: str) -> int:
        return len(await self.load(session))

    async def append(
        self, session: str, messages: Sequence[Message], *, keep: int | None = None
    ) -> None:
        first = next((m.get("content") for m in messages if m.get("role") == "user"), None)
        await self._write(session, messages, title_of(first) if isinstance(first, str) else None)
        if keep is not None:
            stored = await self.transcript(session)
            model = [i for i, m in enumerate(stored) if not m.get("note")]
            start = trim_start([str(stored[i].get("role")) for i in model], keep)
            if start:
                cut = model[start] if start < len(model) else len(stored)
                await self.redis.ltrim(key("history", session), cut, -1)  # type: ignore[misc]

    async def append_note(self, session: str, messages: Sequence[Message]) -> None:
        await self._write(session, [{**m, "note": True} for m in messages], None)

    async def _write(self, session: str, messages: Sequence[Message], title: str | None) -> None:
        now = time.time()
        meta = key("session", session)
        async with self.redis.pipeline(transaction=True) as pipe:
            if messages:
                pipe.rpush(key("history", session), *(json.dumps(m) for m in messages))
            pipe.hsetnx(meta, "created", str(now))
            if title:
                pipe.hsetnx(meta, "title", title)
            pipe.hset(meta, "updated", str(now))
            pipe.zadd(SESSIONS, {session: now})
            await pipe.execute()

    async def clear(self, session: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key("history", session), key("session", session))
            pipe.zrem(SESSIONS, session)
            await pipe.execute()

    async def sessions(self, prefix: str = "", *, limit: int = 200) -> list[SessionInfo]:
        names = [str(n) for n in await self.redis.zrevrange(SESSIONS, 0, -1)]
        found = []
        for name in (n for n in names if n.startswith(prefix)):
            meta = await self.redis.hgetall(key("session", name))  # type: ignore[misc]
            if meta:
                found.append(
                    SessionInfo(
                        name,
                        meta.get("title"),
                        float(meta.get("created", 0)),
                        float(meta.get("updated", 0)),
                    )
                )
            if len(found) >= limit:
                break
        return found

    async def rename(self, session: str, title: str) -> bool:
        meta = key("session", session)
        if not await self.redis.exists(meta):
            return False
        await self.redis.hset(meta, "title", title)  # type: ignore[misc]
        return True
