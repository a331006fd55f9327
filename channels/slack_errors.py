"""slack_sdk / aiohttp errors → `picobot.core.errors`, once, at the edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from picobot.core.errors import (
    BadRequest,
    ChannelError,
    ChannelTimeout,
    ChatNotFound,
    Forbidden,
    MessageTooLong,
    RateLimited,
)

# Slack error codes, by what they mean for us.
FORBIDDEN = frozenset(
    "not_in_channel is_archived not_authed invalid_auth account_inactive token_revoked"
    " token_expired missing_scope no_permission not_allowed_token_type restricted_action"
    " restricted_action_read_only_channel restricted_action_thread_only_channel"
    " restricted_action_non_threadable_channel team_access_not_granted ekm_access_denied".split()
)
NOT_FOUND = frozenset({"channel_not_found"})
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long"})
SERVER_TROUBLE = frozenset("internal_error fatal_error service_unavailable request_timeout".split())
# setStatus answers these when the workspace or app cannot show a status: stop asking.
TYPING_UNAVAILABLE = frozenset(
    "unknown_method not_allowed not_allowed_token_type missing_scope feature_not_enabled"
    " method_not_supported_for_channel_type no_permission access_denied".split()
)


def error_code(exc: SlackApiError) -> str | None:
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def _retry_after(headers: Any) -> float:
    try:
        return float(headers.get("Retry-After", 1))
    except (AttributeError, TypeError, ValueError):
        return 1.0


def _from_api_error(exc: SlackApiError) -> ChannelError:
    """The picobot error for an answer from Slack (most specific first)."""
    response = exc.response
    # A SlackResponse has `status_code`; on an unreadable body the SDK hands over aiohttp's own.
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    code = error_code(exc)
    url = str(getattr(response, "api_url", None) or getattr(response, "url", ""))
    what = f"slack {url.rsplit('/', 1)[-1] or 'call'}: {code or f'HTTP {status}'}"
    if status == 429 or code == "ratelimited":
        return RateLimited(_retry_after(getattr(response, "headers", None) or {}), what)
    if status >= 500 or code in SERVER_TROUBLE:
        return ChannelTimeout(what)
    if code in FORBIDDEN:
        return Forbidden(what)
    if code in NOT_FOUND:
        return ChatNotFound(what)
    if code in TOO_LONG:
        return MessageTooLong(what)
    return BadRequest(what)  # invalid_blocks, message_not_found, cant_update_message, ...


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Raise the `picobot.core.errors` equivalent of any slack_sdk / aiohttp error, ``from`` it.

    :raises RateLimited: HTTP 429 / ``ratelimited``, with `retry_after` from ``Retry-After``.
    :raises ChannelTimeout: connection errors, timeouts, 5xx and Slack's own server errors.
    :raises Forbidden: not in the channel, archived, bad or revoked token, missing scope.
    :raises ChatNotFound: ``channel_not_found``.
    :raises MessageTooLong: ``msg_too_long``.
    :raises BadRequest: any other refusal (``invalid_blocks``, ``message_not_found``, ...).
    """
    try:
        yield
    except ChannelError:
        raise  # already ours (ChannelTimeout is also a TimeoutError)
    except SlackApiError as exc:
        raise _from_api_error(exc) from exc
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise ChannelTimeout(f"slack: {type(exc).__name__}: {exc}") from exc
    except SlackClientError as exc:  # the SDK refused to build the request
        raise BadRequest(f"slack: {exc}") from exc
