import pytest

from picobot.core.errors import ChannelTimeout, Forbidden, RateLimited, TransientError
from picobot.core.retry import RetryPolicy, backoff, retrying


class Script:
    """A callable that raises the scripted exceptions in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(**kwargs: object) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return RetryPolicy(sleep=sleep, **kwargs), slept  # type: ignore[arg-type]


async def test_rate_limited_waits_exactly_retry_after_and_is_not_a_failure() -> None:
    retry, slept = policy(max_attempts=2)
    fn = Script(RateLimited(3), RateLimited(7.5), RateLimited(1), ChannelTimeout("t"))
    assert await retry.call(fn) == "ok"
    assert slept[:3] == [3, 7.5, 1]
    assert fn.calls == 5


async def test_transient_backoff_grows_and_is_capped() -> None:
    retry, slept = policy(max_attempts=10, initial_backoff=1, max_backoff=4)
    fn = Script(*[ChannelTimeout("t") for _ in range(6)])
    assert await retry.call(fn) == "ok"
    assert slept[0] < slept[2]
    assert all(delay <= 4 + 1 for delay in slept)  # cap plus jitter


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    retry, _ = policy(max_attempts=3)
    fn = Script(*[ChannelTimeout(f"t{i}") for i in range(5)])
    with pytest.raises(ChannelTimeout, match="t2"):
        await retry.call(fn)
    assert fn.calls == 3


async def test_permanent_errors_are_not_retried() -> None:
    retry, slept = policy()
    fn = Script(Forbidden("blocked"))
    with pytest.raises(Forbidden):
        await retry.call(fn)
    assert fn.calls == 1 and slept == []


async def test_on_retry_reports_class_and_delay() -> None:
    retry, _ = policy()
    seen: list[tuple[type, float]] = []
    await retry.call(Script(RateLimited(2)), lambda exc, delay, _: seen.append((type(exc), delay)))
    assert seen == [(RateLimited, 2)]


def test_error_tree_decides_by_class() -> None:
    assert issubclass(RateLimited, TransientError)
    assert isinstance(ChannelTimeout("x"), TimeoutError)


def test_backoff_doubles_from_first_and_is_capped() -> None:
    delay = backoff(1.0, 5.0)
    assert 1.0 <= delay(1) <= 2.0
    assert 2.0 <= delay(2) <= 3.0
    assert delay(10) == 5.0


async def test_retrying_retries_only_what_it_accepts_and_reraises() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    attempts = retrying(
        retry_on=ChannelTimeout, wait=lambda exc, n: float(n), stop=lambda e, n: n >= 3, sleep=sleep
    )
    fn = Script(*[ChannelTimeout(f"t{i}") for i in range(5)])
    with pytest.raises(ChannelTimeout, match="t2"):
        await attempts(fn)
    assert (fn.calls, slept) == (3, [1.0, 2.0])
    forbidden = Script(Forbidden("no"))
    with pytest.raises(Forbidden):
        await retrying(retry_on=ChannelTimeout, wait=lambda e, n: 0.0, sleep=sleep)(forbidden)
    assert forbidden.calls == 1
