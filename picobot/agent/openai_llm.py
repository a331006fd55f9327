"""`llm.provider: openai`: any OpenAI-compatible Chat Completions endpoint, streamed.

Works with OpenAI, OpenRouter, Ollama, vLLM, llama.cpp server, DeepSeek and the like. The SDK's
own retries are off (`max_retries=0`); ours, with tenacity, retry only what can succeed later
(rate limits, 5xx, dropped connections) and only until the first text reaches the caller —
a retry after that would show the user the same text twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import importlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk
from tenacity import AsyncRetrying

from picobot.agent.llm import (
    ContextTooLong,
    Finish,
    LLMAuthError,
    LLMBadRequest,
    LLMConnectionError,
    LLMError,
    LLMEvent,
    LLMQuotaExceeded,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
    Message,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
)
from picobot.config import LLMConfig
from picobot.core.retry import backoff, retrying

log = logging.getLogger("picobot.llm")


def _connect_errors() -> tuple[type[BaseException], ...]:
    """httpx's ConnectError (no connection was made), from whichever httpx the SDK uses:
    openai builds on `httpx`, newer releases on its successor `httpx2`."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(name).ConnectError)
    return tuple(found)


_CONNECT_ERRORS = _connect_errors()

Sleep = Callable[[float], Awaitable[None]]

MAX_RETRY_AFTER = 60.0  # a longer Retry-After is not waited for: the user is told to come back
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
    "reduce the length",
)


class OpenAILLM:
    """Streams chat completions from an OpenAI-compatible endpoint.

    Error handling: every SDK error becomes an `LLMError` subclass (see `llm.py`); retryable
    ones are retried up to `config.max_retries` times, honouring Retry-After.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        sleep: Sleep = asyncio.sleep,
        client: AsyncOpenAI | None = None,
        backoff: float = 0.5,
    ) -> None:
        self.config = config
        self.name = config.model
        self._sleep = sleep
        self._backoff = backoff
        key = config.api_key.get_secret_value() if config.api_key else "no-key"
        # max_retries=0: our tenacity policy is the only retry layer.
        self._client = client or AsyncOpenAI(
            base_url=config.base_url, api_key=key, timeout=config.timeout, max_retries=0
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        """Stream one completion as typed events.

        :raises LLMError: translated from the SDK's error, after retries where they can help.
        """
        params: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            params["tools"] = list(tools)
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        opened: tuple[_Reader, list[LLMEvent]] = await self._retrying()(self._open, params)
        reader, first = opened
        try:
            for event in first:
                yield event
            # From here on the caller has seen output: errors end the stream, no retry.
            while (events := await reader.next()) is not None:
                for event in events:
                    yield event
        finally:
            await reader.aclose()

    async def _open(self, params: dict[str, Any]) -> tuple[_Reader, list[LLMEvent]]:
        """Open the stream and read up to the first event the user could see."""
        with _translate_errors(connecting=str(self._client.base_url)):
            stream = await self._client.chat.completions.create(**params)
        reader = _Reader(stream)
        try:
            first: list[LLMEvent] = []
            while not any(isinstance(e, TextDelta | ReasoningDelta) for e in first):
                events = await reader.next()
                if events is None:
                    break
                first += events
        except BaseException:
            await reader.aclose()  # also on cancellation: close the HTTP stream
            raise
        return reader, first

    def _retrying(self) -> AsyncRetrying:
        delay = backoff(self._backoff, 8.0)

        def wait(exc: BaseException, attempt: int) -> float:
            if isinstance(exc, LLMRateLimited) and exc.retry_after is not None:
                return exc.retry_after
            return delay(attempt)

        def on_retry(exc: BaseException, seconds: float, attempt: int) -> None:
            log.warning("LLM call failed (%s), retry %d in %.1f s", exc, attempt, seconds)

        return retrying(
            retry_on=_worth_retrying,
            wait=wait,
            stop=lambda exc, attempt: attempt >= self.config.max_retries + 1,
            on_retry=on_retry,
            sleep=self._sleep,
        )


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, LLMRateLimited) and (exc.retry_after or 0) > MAX_RETRY_AFTER:
        return False
    return isinstance(exc, LLMError) and exc.retryable


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class _Reader:
    """Turns chunks into events; tool calls are assembled by index and emitted at the end."""

    def __init__(self, stream: AsyncStream[ChatCompletionChunk]) -> None:
        self._stream = stream
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._done = False

    async def next(self) -> list[LLMEvent] | None:
        """The events of the next chunk ([] if none); the final events at the end; then None."""
        if self._done:
            return None
        try:
            with _translate_errors():
                chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._done = True
            return self._final()
        return self._events(chunk)

    async def aclose(self) -> None:
        # Closing the response closes the connection: the server stops generating.
        with contextlib.suppress(Exception):
            await self._stream.close()

    def _events(self, chunk: ChatCompletionChunk) -> list[LLMEvent]:
        events: list[LLMEvent] = []
        if chunk.usage is not None:
            u = chunk.usage
            self._usage = Usage(u.prompt_tokens or 0, u.completion_tokens or 0)
        for choice in chunk.choices[:1]:
            delta = choice.delta
            extra = delta.model_extra or {}
            # DeepSeek/vLLM send `reasoning_content`, OpenRouter/Ollama `reasoning`.
            reasoning = extra.get("reasoning_content") or extra.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(ReasoningDelta(reasoning))
            if delta.content:
                events.append(TextDelta(delta.content))
            for tc in delta.tool_calls or []:
                index = tc.index if tc.index is not None else len(self._calls)
                call = self._calls.setdefault(index, _PartialCall())
                call.id = call.id or (tc.id or "")
                if tc.function is not None:
                    call.name = call.name or (tc.function.name or "")
                    call.arguments += tc.function.arguments or ""
            if choice.finish_reason:
                self._finish = choice.finish_reason
        return events

    def _final(self) -> list[LLMEvent]:
        events: list[LLMEvent] = [
            ToolCall(c.id or f"call_{uuid.uuid4().hex[:12]}", c.name, c.arguments)
            for _, c in sorted(self._calls.items())
            if c.name
        ]
        if self._usage is not None:
            events.append(self._usage)
        events.append(Finish(self._finish or ("tool_calls" if self._calls else "stop")))
        return events


@contextlib.contextmanager
def _translate_errors(connecting: str | None = None) -> Iterator[None]:
    """Map the SDK's exceptions to `LLMError` subclasses, once, here. `connecting`: the URL
    being connected to (no response yet), so a connection error means it is unreachable."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise _from_status(exc) from exc
    except openai.APITimeoutError as exc:
        raise LLMTimeout("the model did not answer in time") from exc
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        if connecting is not None and isinstance(cause, _CONNECT_ERRORS):
            raise LLMUnreachable(f"cannot reach {connecting} ({cause})") from exc
        raise LLMConnectionError(f"the connection dropped: {cause}") from exc
    except openai.APIError as exc:  # an error event inside the stream
        raise LLMServerError(exc.message) from exc
    except openai.OpenAIError as exc:
        raise LLMError(str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise LLMServerError(f"malformed stream: {exc}") from exc


def _from_status(exc: openai.APIStatusError) -> LLMError:
    status, code = exc.status_code, (exc.code or "")
    message = f"HTTP {status}: {exc.message}"
    if status in (401, 403):
        return LLMAuthError(message)
    if status == 429:
        if code == "insufficient_quota" or exc.type == "insufficient_quota":
            return LLMQuotaExceeded(message)
        return LLMRateLimited(message, _retry_after(exc))
    lowered = exc.message.lower()
    if status == 413 or code in _CONTEXT_CODES or any(h in lowered for h in _CONTEXT_HINTS):
        return ContextTooLong(message)
    if status >= 500 or status in (408, 409):
        return LLMServerError(message)
    return LLMBadRequest(message)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    headers = exc.response.headers
    with contextlib.suppress(ValueError, TypeError):
        if ms := headers.get("retry-after-ms"):
            return float(ms) / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    with contextlib.suppress(ValueError, TypeError):
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    return None
