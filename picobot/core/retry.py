"""Every retry in picobot is built here: `retrying()` on tenacity (LLM calls, channel starts),
and `RetryPolicy.call` for platform calls, a plain loop on their hot path (see there why).

- Backoff is exponential with jitter, capped (`backoff`); a wait the server asked for (a
  `RateLimited.retry_after`, an LLM's `Retry-After`) replaces it.
- `RetryPolicy` is the outbound policy, by error class:
  - `RateLimited`: wait exactly `retry_after`, then retry; not counted as a failure (up to
    `max_rate_limited` in a row, a guard against a platform that never lets go).
  - other `TransientError` (timeouts, dropped connections, 5xx): backoff, up to `max_attempts`
    failures. A timed-out send may have been delivered; we resend anyway, because a lost reply
    is worse than a rare duplicate (the outbox bounds those).
  - `PermanentError`: raised at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

from picobot.core.errors import RateLimited, TransientError

T = TypeVar("T")

OnRetry = Callable[[BaseException, float, int], None]  # (error, delay, attempt number)
Wait = Callable[[BaseException, int], float]  # (error, attempt number) -> seconds
Stop = Callable[[BaseException, int], bool]
Sleep = Callable[[float], Awaitable[None]]


def backoff(first: float, max_backoff: float) -> Callable[[int], float]:
    """Seconds before retry `n` (1, 2, …): `first` doubling per retry, capped, plus jitter."""

    def delay(n: int) -> float:
        return min(max_backoff, first * 2.0 ** max(0, n - 1) + random.uniform(0, first))

    return delay


def retrying(
    *,
    retry_on: type[BaseException] | Callable[[BaseException], bool],
    wait: Wait,
    stop: Stop | None = None,
    on_retry: OnRetry | None = None,
    sleep: Sleep = asyncio.sleep,
) -> AsyncRetrying:
    """An `AsyncRetrying` that retries what `retry_on` accepts, waits `wait(error, attempt)`,
    gives up when `stop(error, attempt)` (never, without one) and then re-raises the last error.
    """
    # Imported here: only a failed channel start or the openai model retries this way, and a
    # web-chat-only daemon on the demo model never does (-0.5 MB RSS).
    from tenacity import AsyncRetrying, retry_if_exception

    accept = (lambda exc: isinstance(exc, retry_on)) if isinstance(retry_on, type) else retry_on

    def error(state: RetryCallState) -> BaseException:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None  # tenacity asks only after a failed attempt
        return exc

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(error(state), state.upcoming_sleep, state.attempt_number)

    return AsyncRetrying(
        retry=retry_if_exception(accept),
        stop=(lambda s: stop(error(s), s.attempt_number)) if stop else (lambda s: False),
        wait=lambda s: wait(error(s), s.attempt_number),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 5  # transient failures before giving up
    max_rate_limited: int = 50
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Sleep = asyncio.sleep

    async def call(self, fn: Callable[[], Awaitable[T]], on_retry: OnRetry | None = None) -> T:
        """Run `fn` until it succeeds or the policy gives up.

        :raises PermanentError: at once.
        :raises TransientError: the last one, when the attempts are spent.
        """
        # A plain loop over `_Budget`, not tenacity: while a platform is down every lane runs
        # this thousands of times a minute, and tenacity's per-call state (futures holding
        # locks, self-referencing iteration state, the final error's traceback) is cyclic
        # garbage, ~140 objects a failed call, that only a full GC frees: +11 MB of heap that
        # the allocator then keeps (benchmarks/outbox.py). Here the errors free by refcount.
        budget: _Budget | None = None
        attempt = 0
        while True:
            try:
                return await fn()
            except TransientError as exc:
                attempt += 1
                budget = budget or _Budget(self)
                if budget.spent_by(exc, attempt):
                    raise
                delay = budget.delay_for(exc, attempt)
                if on_retry is not None:
                    on_retry(exc, delay, attempt)
            await self.sleep(delay)  # outside `except`: the error is freed while waiting


class _Budget:
    """What one call has spent: transient failures, and rate limits in a row."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.rate_limited = 0
        self._backoff = backoff(policy.initial_backoff, policy.max_backoff)

    def spent_by(self, exc: BaseException, attempt: int = 0) -> bool:
        if isinstance(exc, RateLimited):
            self.rate_limited += 1
            return self.rate_limited > self.policy.max_rate_limited
        self.rate_limited = 0
        self.failures += 1
        return self.failures >= self.policy.max_attempts

    def delay_for(self, exc: BaseException, attempt: int = 0) -> float:
        if isinstance(exc, RateLimited):
            return exc.retry_after
        # Backoff grows with failures only; rate-limit waits do not escalate it.
        return self._backoff(self.failures)
