"""Nonces of failed message creates, reused by their retry (no duplicate on a lost answer)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

NONCE_REUSE = 120.0  # seconds; Discord de-duplicates a nonce for "the past few minutes"
MAX_RETRY_NONCES = 1024


class RetryNonces:
    """Nonces of failed creates, by (channel, reply_to, text), for the retry of the same chunk.

    A nonce is reused only within `NONCE_REUSE` of its first attempt, when Discord still
    remembers it; a send that succeeded leaves nothing behind.
    """

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[int, str | None, str], tuple[str, float]] = OrderedDict()

    def take(self, key: tuple[int, str | None, str]) -> tuple[str, float]:
        """The nonce to send with (kept or new) and when its first attempt was."""
        now = time.monotonic()
        kept = self._kept.pop(key, None)
        if kept is not None and now - kept[1] < NONCE_REUSE:
            return kept
        return str(secrets.randbits(63)), now

    def keep(self, key: tuple[int, str | None, str], nonce: str, first_try: float) -> None:
        self._kept[key] = (nonce, first_try)
        if len(self._kept) > MAX_RETRY_NONCES:
            self._kept.popitem(last=False)
