"""The web chat's flood limits: per web session and per client address.

Every web message has the same sender, so the intake's per-sender rate would be one bucket for
every user of the page. The web chat limits itself instead, before a message is accepted, so
an over-limit POST is answered 429 (and not accepted silently, its run never ending).
"""

from __future__ import annotations

from picobot.inbound.limits import KeyedLimits

__all__ = ["TooManyMessages", "WebLimits"]


class TooManyMessages(Exception):
    """Over the web chat's rate; `reason` is for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebLimits:
    """`take(session, address)` counts one message against both, or raises."""

    def __init__(self, per_session: int, per_address: int) -> None:
        self.sessions: KeyedLimits[str] = KeyedLimits(per_session)
        self.addresses: KeyedLimits[str] = KeyedLimits(per_address)

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
