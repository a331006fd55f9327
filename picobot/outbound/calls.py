"""One platform call, wrapped: rate budget, retries by error class, plain-text fallback.

    plain_fallback(chunk, lambda r: retried(policy, rate_limited(limits, ..., lambda: send(r))))

Each wrapper takes a zero-argument call and returns one, so the steps compose in any order
and each can be tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from picobot.core import metrics
from picobot.core.channel import Rendered
from picobot.core.errors import FormattingRejected, RateLimited
from picobot.core.retry import RetryPolicy
from picobot.outbound.ratelimit import RateLimits
from picobot.text.chunks import Chunk, plain_again

T = TypeVar("T")
Call = Callable[[], Awaitable[T]]

log = logging.getLogger("picobot.dispatch")


def rate_limited(
    limits: RateLimits, chat_id: str, call: Call[T], *, group: bool = False, edit: bool = False
) -> Call[T]:
    """`call`, after taking one token of the chat's budget (waits for it)."""

    async def limited() -> T:
        await limits.acquire(chat_id, group=group, edit=edit)
        return await call()

    return limited


def retried(policy: RetryPolicy, where: str, call: Call[T]) -> Call[T]:
    """`call`, retried by error class (see `picobot.core.retry`); logs and counts each retry."""

    def on_retry(exc: BaseException, delay: float, attempt: int) -> None:
        limited = isinstance(exc, RateLimited)
        metrics.RETRIES.labels("rate_limited" if limited else "transient").inc()
        if limited:
            metrics.RATE_LIMITED.labels(where.partition(":")[0]).inc()
        log.info("%s: %s; retrying in %.1f s", where, exc, delay)

    async def retrying() -> T:
        return await policy.call(call, on_retry)

    return retrying


async def plain_fallback(chunk: Chunk, op: Callable[[Rendered], Awaitable[T]]) -> T:
    """`op(chunk.rendered)`; when the platform refuses the markup, once more as plain text."""
    try:
        return await op(chunk.rendered)
    except FormattingRejected as exc:
        log.info("formatting rejected, resending as plain text: %s", exc)
        metrics.RETRIES.labels("formatting").inc()
        return await op(plain_again(chunk))
