"""Rates per key, for a bounded number of keys: the least recently seen key goes first."""

from __future__ import annotations

from picobot.core.messages import InboundMessage, Sender
from picobot.inbound.intake import FloodGuard
from picobot.inbound.limits import MAX_KEYS, KeyedLimits


async def test_past_the_bound_the_key_seen_least_recently_is_forgotten() -> None:
    forgotten: list[str] = []
    limits: KeyedLimits[str] = KeyedLimits(1, max_keys=3, on_forget=forgotten.append)
    buckets = {key: limits.bucket(key) for key in ("a", "b", "c")}
    for bucket in buckets.values():
        await bucket.acquire()  # all three busy: none idle
    assert limits.bucket("a") is buckets["a"]  # seen again: now the most recent
    limits.bucket("d")
    assert forgotten == ["b"] and len(limits) == 3
    assert limits.bucket("a") is buckets["a"] and limits.bucket("c") is buckets["c"]
    assert not limits.bucket("a").has_capacity()  # its rate is remembered


def message(sender: str) -> InboundMessage:
    return InboundMessage("tg", f"chat{sender}", Sender(sender), "hi")


async def test_a_burst_of_new_senders_keeps_the_flood_guard_bounded() -> None:
    guard = FloodGuard()
    # Every sender's bucket is busy (each just sent): none could be dropped as idle.
    for n in range(MAX_KEYS + 500):
        assert await guard.check(message(str(n)), 1) == "ok"
    assert sum(len(senders) for senders in guard._senders.values()) == MAX_KEYS


async def test_a_flooding_sender_stays_remembered_among_new_ones() -> None:
    guard = FloodGuard()
    assert await guard.check(message("flood"), 1) == "ok"
    assert await guard.check(message("flood"), 1) == "warn"
    for n in range(MAX_KEYS * 2):
        await guard.check(message(str(n)), 1)
        if n % 1000 == 0:
            assert await guard.check(message("flood"), 1) == "drop"
    assert await guard.check(message("flood"), 1) == "drop"
