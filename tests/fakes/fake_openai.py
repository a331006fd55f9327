"""A scriptable fake of an OpenAI-compatible Chat Completions server.

The real ``openai.AsyncOpenAI`` client talks to it over a real TCP socket, so the whole
SDK path (HTTP, SSE parsing, error mapping, retries) is exercised::

    async with FakeOpenAI() as fake:
        fake.script(Reply(text="hi"), Reply(tool_calls=[ToolCall("get_time", {})]), Fail(429))
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        ...
        assert fake.requests[1]["messages"][-1]["role"] == "tool"

Every request to ``POST /v1/chat/completions`` pops the next scripted item; when the
script is empty, ``fake.default`` answers (echo of the last user message).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.fakes.openai_media import MediaEndpoints

__all__ = [
    "Drop",
    "Fail",
    "FakeOpenAI",
    "Reply",
    "Responder",
    "ScriptItem",
    "ToolCall",
    "echo_last_user_message",
]


@dataclass
class ToolCall:
    """One function call the fake model makes."""

    name: str
    # A dict is JSON-encoded; a str is sent verbatim (lets tests send malformed JSON).
    arguments: dict[str, Any] | str = "{}"
    id: str | None = None  # None: a deterministic "call_<request#>_<index>" is generated

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class Reply:
    """One assistant response, streamed or not depending on the request's ``stream``."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    reasoning: str = ""  # streamed first as ``reasoning_content`` deltas (DeepSeek style)
    chunk_size: int = 4  # chars per content / reasoning / arguments delta
    delay: float = 0.0  # seconds between chunks: simulates a slow model
    # If set, the stream pauses after `gate_after` chunks (non-stream: before answering)
    # until the test sets the event, so tests can act mid-stream without sleeping.
    gate: asyncio.Event | None = None
    gate_after: int = 1
    finish_reason: str | None = None  # default: "tool_calls" if tool_calls else "stop"
    usage: dict[str, Any] | None = None  # default: rough counts (chars / 4)


@dataclass
class Fail:
    """An HTTP error answer, before any streaming starts."""

    status: int
    message: str = ""
    code: str | None = None  # e.g. "context_length_exceeded", "rate_limit_exceeded"
    retry_after: float | None = None  # sets the Retry-After header
    type: str | None = None  # error.type; default derived from status


@dataclass
class Drop:
    """Stream ``after_chunks`` content chunks of ``text``, then close the TCP connection.

    No terminating chunk and no ``[DONE]`` is sent. ``after_chunks=0`` (or a non-stream
    request) closes the connection before any response bytes are sent.
    """

    after_chunks: int = 1
    text: str = "This answer is cut off in the middle of a sentence"
    chunk_size: int = 4


ScriptItem = Reply | Fail | Drop
# A callable script item (or `fake.default`) decides from the request body.
Responder = Callable[[dict[str, Any]], ScriptItem]


def _text_of(content: Any) -> str:
    """Text of a message ``content``: a str or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def echo_last_user_message(body: dict[str, Any]) -> ScriptItem:
    """The default responder: ``You said: <last user message>``."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return Reply(text=f"You said: {_text_of(message.get('content'))}")
    return Reply(text="You said: ")


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("permission_error", "You are not allowed to access this resource."),
    404: ("invalid_request_error", "The model does not exist."),
    429: ("requests", "Rate limit reached. Please try again later."),
}


class FakeOpenAI:
    """Fake OpenAI-compatible server on 127.0.0.1 with a random port."""

    def __init__(self, *, api_key: str = "sk-test", model: str = "fake-model") -> None:
        self.api_key = api_key
        self.model = model
        self.requests: list[dict[str, Any]] = []  # chat request bodies, in arrival order
        self.request_headers: list[dict[str, str]] = []  # parallel to `requests`
        self.default: Responder = echo_last_user_message
        # Reject histories the real API rejects (unanswered tool_calls, orphan tool results).
        self.validate_tool_pairing = True
        self.in_flight = 0  # chat requests being answered right now (open streams)
        self.max_in_flight = 0  # peak of `in_flight`, for concurrency tests
        self.cancelled = 0  # chat requests whose client went away before the end
        self._script: deque[ScriptItem | Responder] = deque()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._base_url: str | None = None
        # /audio/transcriptions, /audio/speech, /images/generations (see openai_media).
        self.media = MediaEndpoints(self._authorized, self._bump)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_routes(self.media.routes())
        # handler_cancellation: a client disconnect cancels the handler at once, even while
        # it waits on a gate or a delay, so `cancelled` is exact without writing first.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        self._closing = True
        # Unblock gated / slow handlers so shutdown does not wait for them.
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeOpenAI is not started; use `async with FakeOpenAI()`")
        return self._base_url

    # -- scripting and synchronisation -----------------------------------------------------

    def script(self, *items: ScriptItem | Responder) -> None:
        """Queue what the next requests get, one item per request."""
        self._script.extend(items)

    @property
    def pending(self) -> int:
        """Scripted items not yet consumed."""
        return len(self._script)

    @property
    def last_request(self) -> dict[str, Any]:
        if not self.requests:
            raise AssertionError("no request has reached the fake yet")
        return self.requests[-1]

    # The built-in timeout makes a broken test fail with a readable message instead of
    # hanging until pytest-timeout kills it.
    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate()`` holds; it is re-checked on every server state change."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    # No await between the check and taking `_changed`: no change is missed.
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}: requests={len(self.requests)} "
                f"in_flight={self.in_flight} cancelled={self.cancelled}"
            ) from None

    async def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` chat requests have arrived."""
        await self.wait_until(lambda: len(self.requests) >= n, timeout, f"{n} requests")

    async def wait_cancelled(self, n: int, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.cancelled >= n, timeout, f"{n} cancelled streams")

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no chat request is being answered."""
        await self.wait_until(lambda: self.in_flight == 0, timeout, "in_flight == 0")

    def _bump(self) -> None:
        # Wake every waiter, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- HTTP handlers ---------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(Fail(401, code="invalid_api_key"))
        return web.json_response({"object": "list", "data": [self._model_obj(self.model)]})

    async def _model(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(Fail(401, code="invalid_api_key"))
        name = request.match_info["model"]
        if name != self.model:
            return self._error(
                Fail(404, f"The model `{name}` does not exist.", code="model_not_found")
            )
        return web.json_response(self._model_obj(name))

    @staticmethod
    def _model_obj(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._error(Fail(400, "We could not parse the JSON body of your request."))
        if not isinstance(body, dict):
            return self._error(Fail(400, "The request body must be a JSON object."))
        self.requests.append(body)
        self.request_headers.append(dict(request.headers))
        number = len(self.requests)
        self._bump()

        if not self._authorized(request):
            return self._error(Fail(401, code="invalid_api_key"))
        problem = self._invalid(body)
        if problem is not None:
            return self._error(Fail(400, problem))

        item = self._script.popleft() if self._script else self.default
        if callable(item):
            item = item(body)
        if isinstance(item, Fail):
            return self._error(item)

        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._bump()
        try:
            if isinstance(item, Drop):
                return await self._drop(request, body, item)
            if body.get("stream"):
                return await self._stream(request, body, item, number)
            return await self._complete(body, item, number)
        except asyncio.CancelledError:
            # Client disconnect (handler_cancellation) or our own shutdown.
            if not self._closing:
                self.cancelled += 1
            raise
        finally:
            self._handlers.discard(task)
            self.in_flight -= 1
            self._bump()

    def _invalid(self, body: dict[str, Any]) -> str | None:
        """A 400 message for bodies the real API rejects, else None."""
        if not body.get("model"):
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "Invalid 'messages': empty array. Expected an array with minimum length 1."
        if not self.validate_tool_pairing:
            return None
        open_ids: set[str] = set()  # tool_call_ids still waiting for a tool message
        may_answer = False  # a tool message is allowed only right after tool_calls/tools
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            if role == "tool":
                call_id = message.get("tool_call_id")
                if not may_answer or call_id not in open_ids:
                    return (
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        f"preceeding message with 'tool_calls' (tool_call_id={call_id!r})."
                    )
                open_ids.discard(call_id)
                continue
            if open_ids:
                return (
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(sorted(open_ids))}"
                )
            calls = message.get("tool_calls") if role == "assistant" else None
            open_ids = {c.get("id") for c in calls or [] if isinstance(c, dict)}
            may_answer = bool(open_ids)
        if open_ids:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not "
                f"have response messages: {', '.join(sorted(open_ids))}"
            )
        return None

    # -- responses -------------------------------------------------------------------------

    def _error(self, fail: Fail) -> web.Response:
        default_type, default_message = _DEFAULT_ERRORS.get(
            fail.status,
            ("server_error", "The server had an error while processing your request."),
        )
        headers = {}
        if fail.retry_after is not None:
            headers["Retry-After"] = f"{fail.retry_after:g}"
        payload = {
            "error": {
                "message": fail.message or default_message,
                "type": fail.type or default_type,
                "param": None,
                "code": fail.code,
            }
        }
        return web.json_response(payload, status=fail.status, headers=headers)

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        if reply.usage is not None:
            return reply.usage
        # Rough "tokens": 4 characters each, never 0.
        prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
        produced = reply.text + reply.reasoning
        produced += "".join(c.arguments_json() + c.name for c in reply.tool_calls)
        completion = max(1, len(produced) // 4)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    @staticmethod
    def _call_id(call: ToolCall, number: int, index: int) -> str:
        return call.id or f"call_{number}_{index}"

    @staticmethod
    def _finish_reason(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    async def _complete(self, body: dict[str, Any], reply: Reply, number: int) -> web.Response:
        if reply.gate is not None:
            await reply.gate.wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if reply.text or not reply.tool_calls else None,
            "refusal": None,
        }
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._call_id(call, number, i),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for i, call in enumerate(reply.tool_calls)
            ]
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": self._finish_reason(reply),
                    }
                ],
                "usage": self._usage(body, reply),
            }
        )

    def _deltas(self, reply: Reply, number: int) -> Iterator[dict[str, Any]]:
        """The chunk deltas of a reply, in OpenAI order: reasoning, content, tool calls."""
        for piece in _pieces(reply.reasoning, reply.chunk_size):
            yield {"reasoning_content": piece}
        for piece in _pieces(reply.text, reply.chunk_size):
            yield {"content": piece}
        for index, call in enumerate(reply.tool_calls):
            # First delta of a call: id, type, name, empty arguments; then argument pieces.
            yield {
                "tool_calls": [
                    {
                        "index": index,
                        "id": self._call_id(call, number, index),
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
            for piece in _pieces(call.arguments_json(), reply.chunk_size):
                yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}

    async def _open_stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        return response

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply, number: int
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", self.model),
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            data: dict[str, Any] = {**base, "choices": [choice]}
            if include_usage:
                data["usage"] = None  # like OpenAI: null on every chunk but the last
            return f"data: {json.dumps(data)}\n\n".encode()

        deltas = list(self._deltas(reply, number)) or [{"content": ""}]
        deltas[0] = {"role": "assistant", **deltas[0]}
        frames = [chunk(d) for d in deltas] + [chunk({}, self._finish_reason(reply))]
        if include_usage:
            frames.append(
                f"data: {json.dumps({**base, 'choices': [], 'usage': self._usage(body, reply)})}"
                "\n\n".encode()
            )
        frames.append(b"data: [DONE]\n\n")

        response = await self._open_stream(request)
        try:
            for sent, frame in enumerate(frames):
                if sent and reply.delay:
                    await asyncio.sleep(reply.delay)
                if reply.gate is not None and sent == reply.gate_after:
                    await reply.gate.wait()
                await response.write(frame)
            await response.write_eof()
        except ConnectionResetError:
            # Disconnect noticed by a write (the handler was not cancelled first).
            if not self._closing:
                self.cancelled += 1
        return response

    async def _drop(
        self, request: web.Request, body: dict[str, Any], drop: Drop
    ) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        response = web.StreamResponse()
        if body.get("stream") and drop.after_chunks > 0:
            base = {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model", self.model),
            }
            response = await self._open_stream(request)
            for i, piece in enumerate(_pieces(drop.text, drop.chunk_size)[: drop.after_chunks]):
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
                frame = {**base, "choices": [choice]}
                await response.write(f"data: {json.dumps(frame)}\n\n".encode())
        # close() flushes what was written, then sends FIN: the body ends without the final
        # zero-length chunk (or without any response), which the client sees as broken.
        # Returning without awaiting anything: aiohttp's write_eof on the closed transport
        # raises ConnectionError, which aiohttp itself swallows.
        transport.close()
        return response
