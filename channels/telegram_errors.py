"""PTB's exceptions → `picobot.core.errors`, once, at the edge."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from telegram import error as tg

from picobot.core.errors import (
    BadRequest,
    ChannelTimeout,
    ChatMigrated,
    ChatNotFound,
    Forbidden,
    FormattingRejected,
    MessageTooLong,
    RateLimited,
)


@contextlib.contextmanager
def translate_errors(*, start: bool = False) -> Iterator[None]:
    """Raise PTB's exceptions as `picobot.core.errors` (most specific match), ``from`` the original.

    "message is not modified" (an edit to the same text) is success: the exception is dropped.
    With `start`, a rejected token becomes the clearer "telegram token rejected".
    """
    try:
        yield
    except tg.RetryAfter as exc:
        raise RateLimited(retry_after_seconds(exc.retry_after), str(exc)) from exc
    except tg.ChatMigrated as exc:
        raise ChatMigrated(str(exc.new_chat_id)) from exc
    except tg.BadRequest as exc:  # before NetworkError: BadRequest is one in PTB
        text = exc.message.lower()
        if "message is not modified" in text:
            return
        if "can't parse entities" in text:
            raise FormattingRejected(exc.message) from exc
        if "message is too long" in text:
            raise MessageTooLong(exc.message) from exc
        if "chat not found" in text:
            raise ChatNotFound(exc.message) from exc
        raise BadRequest(exc.message) from exc
    except tg.NetworkError as exc:  # TimedOut included: 5xx, dropped connections, timeouts
        raise ChannelTimeout(exc.message) from exc
    except tg.InvalidToken as exc:
        raise Forbidden("telegram token rejected" if start else exc.message) from exc
    except tg.Forbidden as exc:
        raise Forbidden(exc.message) from exc
    except tg.TelegramError as exc:  # Conflict, EndPointNotFound: not worth retrying
        raise BadRequest(exc.message) from exc


def retry_after_seconds(value: float | dt.timedelta) -> float:
    """`RetryAfter.retry_after` is an int, or a timedelta with ``PTB_TIMEDELTA`` (PTB 23)."""
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
