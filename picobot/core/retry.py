"""Retries by error class, with tenacity.

- `RateLimited`: wait exactly the platform's `retry_after`, then retry; not counted as a failure
  (up to `max_rate_limited` in a row, a guard against a platform that never lets go).
- other `TransientError` (timeouts, dropped connections, 5xx): exponential backoff with jitter,
  capped, up to `max_attempts` failures. A timed-out send may have been delivered; we resend
  anyway, because a lost reply is worse than a rare duplicate (the outbox bounds those).
- `PermanentError`: raised at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from picobot.core.errors import RateLimited, TransientError

T = TypeVar("T")
log = logging.getLogger("picobot.retry")

OnRetry = Callable[[BaseException, float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 5  # transient failures before giving up
    max_rate_limited: int = 50
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def call(self, fn: Callable[[], Awaitable[T]], on_retry: OnRetry | None = None) -> T:
        """Run `fn` until it succeeds or the policy gives up.

        :raises PermanentError: at once.
        :raises TransientError: the last one, when the attempts are spent.
        """
        budget = _Budget(self)
        try:
            return await fn()  # the common case, without tenacity's per-call overhead
        except TransientError as exc:
            if budget.spent_by(exc):
                raise
            delay = budget.delay_for(exc)
            if on_retry is not None:
                on_retry(exc, delay)
            await self.sleep(delay)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = budget.delay_for(exc)
            if on_retry is not None and exc is not None:
                on_retry(exc, delay)
            return delay

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=lambda state: budget.spent_by(
                state.outcome.exception() if state.outcome else None
            ),
            wait=wait,
            sleep=self.sleep,
            reraise=True,
        )
        return await retrying(fn)


class _Budget:
    """What one call has spent: transient failures, and rate limits in a row."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.rate_limited = 0
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.initial_backoff
        )

    def spent_by(self, exc: BaseException | None) -> bool:
        if isinstance(exc, RateLimited):
            self.rate_limited += 1
            return self.rate_limited > self.policy.max_rate_limited
        self.rate_limited = 0
        self.failures += 1
        return self.failures >= self.policy.max_attempts

    def delay_for(self, exc: BaseException | None) -> float:
        if isinstance(exc, RateLimited):
            return exc.retry_after
        # Backoff grows with failures only; rate-limit waits do not escalate it.
        return self._backoff(SimpleNamespace(attempt_number=self.failures))  # type: ignore[arg-type]
