"""Ending tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


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
