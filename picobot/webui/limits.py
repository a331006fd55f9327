"""The web chat's flood limits: per web session and per client address.

Every web message has the same sender, so the intake's per-sender rate would be one bucket for
every user of the page. The web chat limits itself instead, before a message is accepted, so
an over-limit POST is answered 429 (and not accepted silently, its run never ending).
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

__all__ = ["MAX_KEYS", "KeyedLimits", "TooManyMessages", "WebLimits"]

MAX_KEYS = 4096  # buckets kept per kind before idle (full) ones are dropped


class TooManyMessages(Exception):
    """Over the web chat's rate; `reason` is for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyedLimits:
    """One `AsyncLimiter(per_minute, 60)` per key; bounded in the number of keys."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, AsyncLimiter] = {}

    def bucket(self, key: str) -> AsyncLimiter:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._prune()
            bucket = self._buckets[key] = AsyncLimiter(self.per_minute, 60)
        return bucket

    def _prune(self) -> None:
        for key in [k for k, b in self._buckets.items() if b.has_capacity(b.max_rate)]:
            del self._buckets[key]
        while len(self._buckets) >= MAX_KEYS:  # all busy: the oldest go
            del self._buckets[next(iter(self._buckets))]


class WebLimits:
    """`take(session, address)` counts one message against both, or raises."""

    def __init__(self, per_session: int, per_address: int) -> None:
        self.sessions = KeyedLimits(per_session)
        self.addresses = KeyedLimits(per_address)

    async def take(self, session: str, address: str) -> None:
        """:raises TooManyMessages: if either is over its rate (then neither is counted)."""
        by_session, by_address = self.sessions.bucket(session), self.addresses.bucket(address)
        if not by_session.has_capacity():
            raise TooManyMessages(
                f"more than {self.sessions.per_minute} messages a minute in this session; "
                "wait a little"
            )
        if not by_address.has_capacity():
            raise TooManyMessages(
                f"more than {self.addresses.per_minute} messages a minute from this address; "
                "wait a little"
            )
        await by_session.acquire()  # both have capacity: neither waits
        await by_address.acquire()
