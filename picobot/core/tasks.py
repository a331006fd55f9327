"""Ending tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | asyncio.Future[Any]) -> None:
    """Cancel `tasks` and wait until each has ended.

    ``with suppress(CancelledError): await task`` would also swallow a cancellation of the
    *caller* that arrives meanwhile (a forced exit during shutdown); this re-raises it.
    """
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


async def to_the_end(call: Awaitable[T]) -> T:
    """Await `call`; if the caller is cancelled meanwhile, let `call` finish first, then end
    as cancelled: for work that must not stop halfway (a connection half opened, a reminder
    recorded in the outbox whose entry is not yet advanced)."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
