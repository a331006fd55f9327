"""Rates per key (a sender, a web session, an address): one `AsyncLimiter` each, for a bounded
number of keys."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from aiolimiter import AsyncLimiter

K = TypeVar("K", bound=Hashable)

MAX_KEYS = 4096  # buckets kept, the keys seen last


class KeyedLimits(Generic[K]):
    """One `AsyncLimiter(per_minute, 60)` per key, for the `max_keys` keys seen last.

    A new key past the bound forgets the key seen least recently (and `on_forget` hears of
    it). That is one step, where looking for idle buckets first would look at every bucket for
    each new key while all are busy: a burst of thousands of new senders in a minute made that
    quadratic. A sender over its rate keeps sending, so it stays among the keys seen last.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = MAX_KEYS,
        on_forget: Callable[[K], object] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._on_forget = on_forget
        self._buckets: OrderedDict[K, AsyncLimiter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: K) -> AsyncLimiter:
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        if len(self._buckets) >= self.max_keys:
            forgotten, _ = self._buckets.popitem(last=False)
            if self._on_forget is not None:
                self._on_forget(forgotten)
        bucket = self._buckets[key] = AsyncLimiter(self.per_minute, 60)
        return bucket
