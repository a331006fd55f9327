"""The LLM interface: a provider streams typed events for one chat completion.

Providers map their SDK's errors into `LLMError` subclasses here, once, so the agent decides
by class: only `retryable` errors are retried, and the user sees `user_message`, never a traceback.

    LLMError                        the model call failed
    ├── LLMAuthError                401/403: bad or missing API key
    ├── LLMQuotaExceeded            429 insufficient_quota: waiting will not help
    ├── LLMRateLimited              429: retryable, after `retry_after` seconds when known
    ├── ContextTooLong              the conversation no longer fits the model's context
    ├── LLMBadRequest               other 4xx: wrong model name, invalid parameters
    ├── LLMServerError              5xx, 408, 409, an error event mid-stream: retryable
    └── LLMConnectionError          the connection dropped mid-answer: retryable
        ├── LLMUnreachable          no connection at all (wrong `llm.base_url`, server down)
        └── LLMTimeout              (also a TimeoutError) no answer within `llm.timeout`
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

from picobot.core.errors import PicobotError
from picobot.core.events import ReasoningDelta as ReasoningDelta  # the same as run events
from picobot.core.events import TextDelta as TextDelta
from picobot.core.messages import Message as Message  # re-exported for the providers
from picobot.core.values import value


@value(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@value(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@value(frozen=True, slots=True)
class Finish:
    reason: str  # "stop", "tool_calls", "length", ...


LLMEvent = TextDelta | ReasoningDelta | ToolCall | Usage | Finish


class LLMError(PicobotError):
    """The model call failed. `user_message` is safe to show to the user."""

    retryable = False
    user_message = "⚠️ The language model failed to answer. Please try again."


class LLMAuthError(LLMError):
    user_message = (
        "⚠️ The language model rejected the bot's credentials. "
        "The bot's owner needs to check the API key."
    )


class LLMQuotaExceeded(LLMError):
    user_message = "⚠️ The language model account has run out of quota."


class LLMRateLimited(LLMError):
    """Too many requests; `retry_after` is the server's hint in seconds, if it sent one."""

    retryable = True
    user_message = "⚠️ The language model is busy right now. Please try again in a minute."

    def __init__(self, message: str = "rate limited", retry_after: float | None = None) -> None:
        self.retry_after = None if retry_after is None else max(0.0, retry_after)
        super().__init__(message)


class ContextTooLong(LLMError):
    user_message = "⚠️ This conversation is too long for the model. Send /new to start afresh."


class LLMBadRequest(LLMError):
    user_message = "⚠️ The language model rejected the request."


class LLMServerError(LLMError):
    retryable = True
    user_message = "⚠️ The language model is having problems. Please try again later."


class LLMConnectionError(LLMError):
    retryable = True
    user_message = "⚠️ Lost the connection to the language model. Please try again."


class LLMUnreachable(LLMConnectionError):
    """Nothing answered at the endpoint; the message names it (for the owner, not users)."""

    user_message = "⚠️ Could not reach the language model. Please try again later."


class LLMTimeout(LLMConnectionError, TimeoutError):
    user_message = "⚠️ The language model took too long to answer. Please try again."


class LLM(Protocol):
    name: str

    def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        """Stream one completion.

        :raises LLMError: translated from the provider's error.
        """
        ...

    async def aclose(self) -> None: ...
