"""Platform events de-duplicated cluster-wide: the first node to record an id handles it."""

from __future__ import annotations

from redis.asyncio import Redis

from picobot.cluster import key

KEEP_SECONDS = 7 * 24 * 3600  # as the SQLite outbox remembers replay ids


class SeenEvents:
    """`SET picobot:seen:<id> NX PX`: True from `seen()` means another node (or an earlier
    delivery) recorded the event already."""

    def __init__(self, redis: Redis, keep: float = KEEP_SECONDS) -> None:
        self.redis = redis
        self.keep_ms = int(keep * 1000)

    async def seen(self, event_id: str) -> bool:
        """Record `event_id`; True if it was recorded before (a replay).

        :raises redis.exceptions.RedisError: if Redis cannot be reached.
        """
        first = await self.redis.set(key("seen", event_id), "1", nx=True, px=self.keep_ms)
        return not first

    async def forget(self, event_id: str) -> None:
        """Undo `seen()` for an event that was not taken after all (e.g. shutting down)."""
        await self.redis.delete(key("seen", event_id))
