"""A fake Slack for tests: Web API, Socket Mode and signed Events API posts on 127.0.0.1.

The real slack_sdk / slack-bolt talk to it:

    async with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url, retry_handlers=[])
        app = AsyncApp(client=client)
        handler = AsyncSocketModeHandler(app, fake.app_token)  # uses app.client's base_url
        await handler.connect_async()
        envelope_id = await fake.push_event(fake.dm_event("U1", "hi"))
        await fake.wait_ack(envelope_id)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.slack_files import FileError, SlackFiles

# Re-exported (`X as X`) so tests import everything from here.
from tests.fakes.slack_socket import APP_ID as APP_ID
from tests.fakes.slack_socket import BOT_ID as BOT_ID
from tests.fakes.slack_socket import BOT_USER_ID as BOT_USER_ID
from tests.fakes.slack_socket import TEAM_ID as TEAM_ID
from tests.fakes.slack_socket import HttpReply as HttpReply
from tests.fakes.slack_socket import SocketModeMixin
from tests.fakes.slack_socket import slack_signature as slack_signature

MAX_TEXT = 40_000  # chat.postMessage / chat.update `text`
MAX_STREAM_TEXT = 12_000  # markdown_text in chat.*Stream
MAX_SECTION_TEXT = 3_000  # section block text must be < 3001


class ManualClock:
    """A clock tests advance by hand, for deterministic rate limits."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int  # HTTP status; 0 when the connection was dropped
    at: float  # injected clock
    error: str | None = None  # Slack error code, "http_500", "dropped", ...


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    edits: int = 0
    history: list[str] = field(default_factory=list)  # earlier texts, oldest first
    deleted: bool = False
    streamed: bool = False  # created by chat.startStream
    streaming: bool = False  # stream still open (no chat.stopStream yet)
    blocks: list[Any] | None = None
    mrkdwn: bool = True
    chunks: list[dict[str, Any]] = field(default_factory=list)  # stream chunks as received

    def as_api(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.thread_ts:
            msg["thread_ts"] = self.thread_ts
        if self.blocks is not None:
            msg["blocks"] = self.blocks
        return msg


class _Bucket:
    """Token bucket: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """Consume one token; return 0, or the seconds until one is available (not consumed)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class _SlackError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _parse_json_field(value: Any) -> Any:
    # Form-encoded calls send blocks as a JSON string; JSON calls send a list.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise _SlackError("invalid_blocks") from exc
    return value


class FakeSlack(SocketModeMixin):
    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        clock: Callable[[], float] = time.monotonic,
        post_per_second: float = 1.0,
        post_burst: int = 1,
        update_per_minute: float = 50,
        update_burst: int | None = None,
        enforce_limits: bool = True,
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.clock = clock
        self.post_per_second, self.post_burst = post_per_second, post_burst
        self.update_per_minute = update_per_minute
        # Tier 3 is judged per minute, so a whole minute's worth may come at once by default.
        self.update_burst = update_burst if update_burst is not None else int(update_per_minute)
        self.enforce_limits = enforce_limits
        self.truncate_long_text = False  # True: cut text at 40k instead of msg_too_long
        self.messages: dict[str, dict[str, FakeMessage]] = {}
        self.calls: list[Call] = []
        self.rate_limited: list[Call] = []
        self.statuses: list[dict[str, Any]] = []
        self.port = 0
        self._forbidden: set[str] = set()
        self._missing: set[str] = set()
        self._forced_429: list[dict[str, Any]] = []
        self._faults: list[dict[str, Any]] = []
        self._post_buckets: dict[str, _Bucket] = {}
        self._update_bucket: _Bucket | None = None
        self._runner: web.AppRunner | None = None
        self.files = SlackFiles(bot_token)  # files.info, url_private, the two-step upload
        self._init_socket()

    # ---- lifecycle ----

    async def __aenter__(self) -> FakeSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_routes(self.files.routes())
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._ws_handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        self.files.base = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_socket()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # ---- test controls ----

    def forbid(self, channel: str) -> None:
        """Calls on `channel` fail with not_in_channel."""
        self._forbidden.add(channel)

    def missing(self, channel: str) -> None:
        """Calls on `channel` fail with channel_not_found."""
        self._missing.add(channel)

    def force_429(
        self, method: str, channel: str | None = None, retry_after: int = 1, count: int = 1
    ) -> None:
        """The next `count` calls of `method` (on `channel`, if given) get HTTP 429."""
        self._forced_429.append(
            {"method": method, "channel": channel, "retry_after": retry_after, "count": count}
        )

    def fail_next(self, method: str, kind: str = "500", count: int = 1) -> None:
        """Fail the next `count` calls of `method` (or "*").

        kind: an HTTP status such as "500"/"503" (HTML body, no state change); "drop" (connection
        closed before the call takes effect); "lost_response" (the call takes effect, then the
        connection is closed, so the client cannot know it succeeded).
        """
        if not (kind.isdigit() or kind in ("drop", "lost_response")):
            raise ValueError(f"unknown fault kind {kind!r}")
        self._faults.append({"method": method, "kind": kind, "count": count})

    def channel_log(
        self, channel: str, thread_ts: str | None = None, *, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """Messages in `channel` by ts; with thread_ts, the thread's parent and replies."""
        # Sort on (seconds, micros) ints: float() of a ts can lose the last digits.
        msgs = sorted(
            self.messages.get(channel, {}).values(),
            key=lambda m: tuple(int(part) for part in m.ts.split(".")),
        )
        if thread_ts is not None:
            msgs = [m for m in msgs if thread_ts in (m.ts, m.thread_ts)]
        return [m for m in msgs if include_deleted or not m.deleted]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # ---- HTTP plumbing ----

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        elif request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or params.pop("token", None)
        params.pop("token", None)

        fault = self._take(self._faults, method, params)
        if fault is not None and fault["kind"].isdigit():
            status = int(fault["kind"])
            await self._record(method, params, status, f"http_{status}")
            html = f"<html><body>{status} fake upstream error</body></html>"
            return web.Response(status=status, text=html, content_type="text/html")
        if fault is not None and fault["kind"] == "drop":
            await self._record(method, params, 0, "dropped")
            return self._drop(request)

        status, body_out, headers = self._dispatch(method, params, token)
        if fault is not None:  # lost_response: the state change above already happened
            await self._record(method, params, 0, "lost_response")
            return self._drop(request)
        call = await self._record(
            method, params, status, None if body_out["ok"] else body_out["error"]
        )
        if status == 429:
            self.rate_limited.append(call)
        return web.json_response(body_out, status=status, headers=headers)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        # Closing the transport makes the client see ServerDisconnectedError; the response
        # returned below is never written.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)

    async def _record(
        self, method: str, params: dict[str, Any], status: int, error: str | None
    ) -> Call:
        call = Call(method, params, status, self.clock(), error)
        self.calls.append(call)
        await self._notify()
        return call

    @staticmethod
    def _take(
        rules: list[dict[str, Any]], method: str, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        channel = params.get("channel") or params.get("channel_id")
        for rule in rules:
            if rule["method"] in (method, "*") and rule.get("channel") in (None, channel):
                rule["count"] -= 1
                if rule["count"] <= 0:
                    rules.remove(rule)
                return rule
        return None

    def _dispatch(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        handler = self._handlers().get(method)
        try:
            if handler is None:
                raise _SlackError("unknown_method")
            self._check_token(method, token)
            retry_after = self._rate_limit(method, params)
            if retry_after is not None:
                body = {"ok": False, "error": "ratelimited"}
                return 429, body, {"Retry-After": str(retry_after)}
            return 200, {"ok": True, **handler(params)}, {}
        except (_SlackError, FileError) as exc:
            return 200, {"ok": False, "error": exc.code}, {}

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise _SlackError("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise _SlackError("invalid_auth")
        # apps.connections.open takes only the app-level token; everything else the bot token.
        if (token == self.app_token) != (method == "apps.connections.open"):
            raise _SlackError("not_allowed_token_type")

    def _rate_limit(self, method: str, params: dict[str, Any]) -> int | None:
        forced = self._take(self._forced_429, method, params)
        if forced is not None:
            return int(forced["retry_after"])
        if not self.enforce_limits:
            return None
        now = self.clock()
        bucket: _Bucket | None = None
        if method == "chat.postMessage":
            fresh = _Bucket(self.post_per_second, self.post_burst, now)
            bucket = self._post_buckets.setdefault(str(params.get("channel", "")), fresh)
        elif method == "chat.update":
            if self._update_bucket is None:
                rate = self.update_per_minute / 60
                self._update_bucket = _Bucket(rate, self.update_burst, now)
            bucket = self._update_bucket
        if bucket is None:
            return None
        wait = bucket.take(now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    # ---- Web API methods ----

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "assistant.threads.setStatus": self._set_status,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "users.info": self._users_info,
            **self.files.handlers(),
        }

    def _channel(self, params: dict[str, Any], key: str = "channel") -> str:
        channel = params.get(key)
        if not channel or channel in self._missing:
            raise _SlackError("channel_not_found")
        if channel in self._forbidden:
            raise _SlackError("not_in_channel")
        return str(channel)

    def _message(self, params: dict[str, Any]) -> FakeMessage:
        channel = self._channel(params)
        msg = self.messages.get(channel, {}).get(str(params.get("ts")))
        if msg is None or msg.deleted:
            raise _SlackError("message_not_found")
        return msg

    def _text(self, params: dict[str, Any]) -> tuple[str, list[Any] | None]:
        text = params.get("markdown_text") or params.get("text") or ""
        blocks = _parse_json_field(params.get("blocks"))
        if not text and not blocks:
            raise _SlackError("no_text")
        if len(text) > MAX_TEXT:
            if not self.truncate_long_text:
                raise _SlackError("msg_too_long")
            text = text[:MAX_TEXT]
        for block in blocks or []:
            section = block.get("text") if isinstance(block, dict) else None
            if isinstance(section, dict) and len(section.get("text", "")) > MAX_SECTION_TEXT:
                raise _SlackError("invalid_blocks")
        return str(text), blocks

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "picobot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/socket?ticket={self._issue_ticket()}"}

    def _new_message(self, channel: str, text: str, thread_ts: Any, **kw: Any) -> FakeMessage:
        msg = FakeMessage(
            channel, self.next_ts(), text, str(thread_ts) if thread_ts else None, **kw
        )
        self.messages.setdefault(channel, {})[msg.ts] = msg
        return msg

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        text, blocks = self._text(params)
        mrkdwn = str(params.get("mrkdwn", True)).lower() not in ("0", "false")
        msg = self._new_message(
            channel, text, params.get("thread_ts"), blocks=blocks, mrkdwn=mrkdwn
        )
        return {"channel": channel, "ts": msg.ts, "message": msg.as_api()}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._message(params)
        text, blocks = self._text(params)
        msg.history.append(msg.text)  # identical text is fine on Slack: still an edit
        msg.text, msg.edits = text, msg.edits + 1
        if blocks is not None:
            msg.blocks = blocks
        return {"channel": msg.channel, "ts": msg.ts, "text": text, "message": msg.as_api()}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._message(params)
        msg.deleted = True
        return {"channel": msg.channel, "ts": msg.ts}

    def _set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params, "channel_id")
        if not params.get("thread_ts") or "status" not in params:
            raise _SlackError("invalid_arguments")
        self.statuses.append({**params, "channel_id": channel, "at": self.clock()})
        return {}

    @staticmethod
    def _stream_text(params: dict[str, Any], required: bool) -> tuple[str, list[dict[str, Any]]]:
        # slack_sdk's chat_stream() sends {"type": "markdown_text"} chunks, not markdown_text.
        chunks = _parse_json_field(params.get("chunks")) or []
        text = str(params.get("markdown_text") or "")
        text += "".join(str(c.get("text", "")) for c in chunks if c.get("type") == "markdown_text")
        if required and not text and not chunks:
            raise _SlackError("invalid_arguments")
        if len(text) > MAX_STREAM_TEXT:
            raise _SlackError("msg_too_long")
        return text, chunks

    def _stream(self, params: dict[str, Any]) -> FakeMessage:
        msg = self._message(params)
        if not msg.streaming:
            raise _SlackError("message_not_in_streaming_state")
        return msg

    def _start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        if not params.get("thread_ts"):
            raise _SlackError("invalid_arguments")
        text, chunks = self._stream_text(params, required=False)
        msg = self._new_message(
            channel, text, params["thread_ts"], streamed=True, streaming=True, chunks=chunks
        )
        return {"channel": channel, "ts": msg.ts}

    def _append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._stream(params)
        text, chunks = self._stream_text(params, required=True)
        msg.text += text
        msg.chunks.extend(chunks)
        return {"channel": msg.channel, "ts": msg.ts}

    def _stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._stream(params)
        text, chunks = self._stream_text(params, required=False)
        msg.text += text
        msg.chunks.extend(chunks)
        msg.streaming = False
        if params.get("blocks"):
            msg.blocks = _parse_json_field(params["blocks"])
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_api()}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = str(params.get("user") or "")
        if not user:
            raise _SlackError("user_not_found")
        name = f"user-{user.lower()}"
        profile = {"display_name": name, "real_name": name.title()}
        info = {"id": user, "team_id": TEAM_ID, "name": name, "is_bot": user == BOT_USER_ID}
        return {"user": {**info, "real_name": name.title(), "tz": "UTC", "profile": profile}}
