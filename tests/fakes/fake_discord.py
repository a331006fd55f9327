"""A fake Discord (REST API v10 + Gateway) on aiohttp.web for the real discord.py 2.7 Client.

Usage::

    async with FakeDiscord() as fake:
        fake.add_guild(10, "guild", channels=[(20, "general")])
        with fake.patch_discord():
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            await client.login(fake.token)
            task = asyncio.create_task(client.connect(reconnect=False))
            await asyncio.wait_for(client.wait_until_ready(), 5)
            await fake.user_message(20, "hello", guild_id=10)
            await fake.wait_for(lambda: fake.channel_log(20))

How discord.py is redirected: REST URLs are `Route.BASE + path`, read when each Route is built,
so patching `discord.http.Route.BASE` is enough. `Client.connect` never asks `/gateway/bot` (only
`AutoShardedClient` does); it connects to `DiscordWebSocket.DEFAULT_GATEWAY`, and after READY to
`resume_gateway_url`, which the fake points at its own `/resume-gateway` path.

Behaviour mirrored from Discord: `Authorization: Bot <token>` (401), unknown channel 10003 /
message 10008 (404), `forbid()` → 403 50013, 2000-char limit → 400 50035, per-(route, channel)
buckets + a global 50/s limit with `X-RateLimit-*` headers and 429s carrying `Via` (discord.py
treats a 429 without `Via` as a Cloudflare ban), echo of the bot's own messages over the gateway
(MESSAGE_CREATE/UPDATE/DELETE), and intents (no MESSAGE_CONTENT → blank guild content).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import yarl
from aiohttp import web

from tests.fakes.discord_files import DiscordFiles, Upload
from tests.fakes.discord_gateway import (
    DEFAULT_USER_ID,
    FakeChannel,
    FakeGuild,
    FakeMessage,
    GatewayMixin,
    Snowflakes,
    snowflake_time,
    user_payload,
)

with warnings.catch_warnings():
    # discord.py imports the deprecated `audioop` (voice) module; pytest runs with -W error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord.gateway
    import discord.http

__all__ = ["Call", "FakeDiscord", "FakeMessage"]

MAX_CONTENT = 2000
GLOBAL_LIMIT = (50, 1.0)  # requests per seconds, across all routes
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "message_create": (5, 5.0),
    "message_edit": (5, 5.0),
    "message_delete": (5, 1.0),
    "typing": (5, 5.0),
}
OTHER_ROUTE_LIMIT = (50, 1.0)
_JSON = "application/json"

_CHANNEL = r"/channels/(?P<cid>\d+)"
_MESSAGE = _CHANNEL + r"/messages/(?P<mid>\d+)"
# (method, path regex, route name); the name is what fail_next()/force_429(route=) accept.
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p + "$"), n)
    for m, p, n in [
        ("GET", r"/users/@me", "get_me"),
        ("POST", r"/users/@me/channels", "create_dm"),
        ("GET", r"/users/(?P<uid>\d+)", "get_user"),
        ("GET", r"/oauth2/applications/@me", "get_application"),
        ("GET", r"/gateway/bot", "get_gateway_bot"),
        ("GET", r"/gateway", "get_gateway"),
        ("GET", _CHANNEL, "get_channel"),
        ("POST", _CHANNEL + r"/messages", "message_create"),
        ("GET", _MESSAGE, "message_get"),
        ("PATCH", _MESSAGE, "message_edit"),
        ("DELETE", _MESSAGE, "message_delete"),
        ("POST", _CHANNEL + r"/typing", "typing"),
    ]
]

Json = dict[str, Any]


@dataclass
class Call:
    method: str
    path: str  # below /api/v10, e.g. "/channels/20/messages"
    json: Any
    status: int  # 0 when the fake dropped the connection without answering
    at: float  # the fake's clock
    route: str = ""
    answered: bool = True  # False for "drop" / "lost_response" faults


@dataclass
class _Window:
    """Fixed window: `limit` requests until `reset_at`, then a fresh window."""

    limit: int
    reset_at: float
    count: int = 0


@dataclass
class _Rule:
    kind: str  # "429:<retry_after>", a status such as "500", "drop" or "lost_response"
    remaining: int
    channel_id: int | None = None
    target: str | None = None  # route name, "METHOD /path" prefix or "/path" prefix

    def matches(self, method: str, path: str, route: str, cid: int | None) -> bool:
        if self.channel_id is not None and self.channel_id != cid:
            return False
        t = self.target
        return t is None or t == route or f"{method} {path}".startswith(t) or path.startswith(t)


def _error(status: int, code: int, message: str, **extra: Any) -> tuple[int, Json]:
    return status, {"code": code, "message": message, **extra}


def _too_long() -> tuple[int, Json]:
    error = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
    return _error(400, 50035, "Invalid Form Body", errors={"content": {"_errors": [error]}})


class FakeDiscord(GatewayMixin):
    """In-process Discord. Use as `async with FakeDiscord() as fake:` then `fake.patch_discord()`.

    Every REST request lands in `calls` (and 429s also in `rate_limited`); `wait_for()` re-checks
    its predicate after each REST call and each gateway frame, so tests never sleep.
    `enforce_limits=False` stops the limiter's 429s but keeps honest `X-RateLimit-*` headers, so
    discord.py still paces itself; `zlib_stream=True` sends compressed BINARY gateway frames.
    """

    def __init__(
        self,
        token: str = "TEST.TOKEN",
        *,
        bot_id: int = 1000,
        bot_name: str = "picobot",
        application_id: int = 2000,
        heartbeat_interval_ms: int = 41250,
        clock: Callable[[], float] = time.monotonic,
        enforce_limits: bool = True,
        zlib_stream: bool = False,
    ) -> None:
        self.token, self.bot_id, self.bot_name = token, bot_id, bot_name
        self.application_id = application_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.clock, self.enforce_limits, self.zlib_stream = clock, enforce_limits, zlib_stream
        self.limits: dict[str, tuple[int, float]] = dict(DEFAULT_LIMITS)  # tests may tune
        self.http_url = self.gateway_url = self.resume_gateway_url = ""
        self.identified = asyncio.Event()
        self.identify_payload: Json | None = None
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.users: dict[int, str] = {bot_id: bot_name}
        self.forbidden: set[int] = set()
        self.messages: dict[int, dict[int, FakeMessage]] = {}
        self.calls: list[Call] = []
        self.rate_limited: list[Call] = []
        self.typing: list[int] = []
        self._windows: dict[tuple[str, int | None], _Window] = {}
        self._rules: list[_Rule] = []
        self._snowflakes = Snowflakes()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.files = DiscordFiles()  # the CDN and the bot's uploads
        self._init_gateway()

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # 413s are the fake's to give
        app.router.add_routes(self.files.routes())
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/resume-gateway", self._gateway_handler)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest_handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        # Bind port 0 ourselves so the chosen port is known without private attributes.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.http_url = self.files.base = f"http://127.0.0.1:{port}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        self.resume_gateway_url = f"ws://127.0.0.1:{port}/resume-gateway"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close_gateways()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this fake; restore on exit."""
        route, ws_cls = discord.http.Route, discord.gateway.DiscordWebSocket
        old_base, old_gateway = route.BASE, ws_cls.DEFAULT_GATEWAY
        route.BASE = f"{self.http_url}/api/v10"
        ws_cls.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            route.BASE, ws_cls.DEFAULT_GATEWAY = old_base, old_gateway

    # -- world setup ------------------------------------------------------------------------

    def add_guild(self, guild_id: int, name: str, channels: Sequence[tuple[int, str]] = ()) -> None:
        """Register a guild and its text channels (sent as GUILD_CREATE on the next IDENTIFY)."""
        self.guilds[guild_id] = FakeGuild(guild_id, name, [cid for cid, _ in channels])
        for cid, cname in channels:
            self.channels[cid] = FakeChannel(cid, cname, guild_id=guild_id)

    def add_dm(self, channel_id: int, user_id: int, username: str) -> None:
        self.users[user_id] = username
        self.channels[channel_id] = FakeChannel(channel_id, username, recipient_id=user_id)

    def forbid(self, channel_id: int) -> None:
        """Make every REST call on this channel answer 403 50013 Missing Permissions."""
        self.forbidden.add(channel_id)

    def force_429(
        self, channel_id: int, retry_after: float, count: int = 1, *, route: str | None = None
    ) -> None:
        """The next `count` requests on this channel (optionally only `route`) get a 429."""
        self._rules.append(_Rule(f"429:{retry_after}", count, channel_id, route))

    def fail_next(self, method_path_prefix_or_name: str, kind: str, count: int = 1) -> None:
        """Fail the next `count` matching requests. Kinds: a status such as "500" answers with
        it; "drop" closes the connection unhandled; "lost_response" handles the request (the
        message *is* posted) and then closes without answering, like a lost ack.
        Match a route name ("message_create"), "POST /channels/20…" or "/channels/20…"."""
        if kind not in ("drop", "lost_response") and not kind.isdigit():
            raise ValueError(f"unknown fault kind {kind!r}")
        self._rules.append(_Rule(kind, count, None, method_path_prefix_or_name))

    # -- inspection -------------------------------------------------------------------------

    def channel_log(self, channel_id: int, *, include_users: bool = False) -> list[FakeMessage]:
        """Non-deleted messages in send order; only the bot's unless `include_users`."""
        return [
            m
            for m in self.messages.get(channel_id, {}).values()
            if not m.deleted and (include_users or m.author_id == self.bot_id)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` is true, re-checking after every REST call/gateway frame.

        :raises TimeoutError: if it is still false after `timeout` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            recent = [(c.method, c.path, c.status) for c in self.calls[-5:]]
            raise TimeoutError(f"condition not met in {timeout}s; last calls: {recent}") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- REST -------------------------------------------------------------------------------

    async def _rest_handler(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, "/" + request.match_info["tail"]
        body, files = await _read_body(request)
        route, params = "", {}
        for m, pattern, name in ROUTES:
            match = pattern.match(path)
            if m == method and match:
                route, params = name, {k: int(v) for k, v in match.groupdict().items()}
                break
        cid = params.get("cid")
        headers: dict[str, str] = {"Via": "1.1 google"}
        authorized = request.headers.get("Authorization") == f"Bot {self.token}"
        rule = self._take_rule(method, path, route, cid) if route and authorized else None
        lost = rule is not None and rule.kind == "lost_response"  # handled, then no answer
        if not route:
            status, data = _error(404, 0, "404: Not Found")
        elif not authorized:
            status, data = _error(401, 0, "401: Unauthorized")
        elif rule is not None and not lost:
            if rule.kind == "drop":
                self._record(method, path, body, 0, route, answered=False)
                return _hang_up(request)
            if rule.kind.startswith("429:"):
                status, data = self._too_many(headers, float(rule.kind[4:]), is_global=False)
            else:
                status, data = _error(int(rule.kind), 0, f"{rule.kind}: injected failure")
        elif (limited := self._limit(route, cid, headers)) is not None:
            status, data = limited
        elif cid is not None and cid not in self.channels:
            status, data = _error(404, 10003, "Unknown Channel")
        elif cid is not None and cid in self.forbidden:
            status, data = _error(403, 50013, "Missing Permissions")
        elif sum(len(d) for _, d in files) > self.files.upload_limit:
            status, data = _error(413, 40005, "Request entity too large")
        else:
            handler = getattr(self, f"_route_{route}")
            status, data = await handler(params, body, files)
        call = self._record(method, path, body, status, route, answered=not lost)
        if lost:
            return _hang_up(request)
        if status == 429:
            self.rate_limited.append(call)
        if status == 204:
            return web.Response(status=204, headers=headers)
        # Exactly "application/json": discord.py's json_or_text() compares the header verbatim.
        body_bytes = json.dumps(data).encode()
        return web.Response(body=body_bytes, status=status, headers=headers, content_type=_JSON)

    def _take_rule(self, method: str, path: str, route: str, cid: int | None) -> _Rule | None:
        rule = next((r for r in self._rules if r.matches(method, path, route, cid)), None)
        if rule is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._rules.remove(rule)
        return rule

    def _record(
        self, method: str, path: str, body: Any, status: int, route: str, *, answered: bool = True
    ) -> Call:
        call = Call(method, path, body, status, self.clock(), route, answered)
        self.calls.append(call)
        self._notify()
        return call

    def _limit(self, route: str, cid: int | None, headers: dict[str, str]) -> Any:
        """Count the request in the global and the (route, channel) windows; set headers."""
        now = self.clock()
        for key, (limit, period) in [
            (("global", None), GLOBAL_LIMIT),
            ((route, cid), self.limits.get(route, OTHER_ROUTE_LIMIT)),
        ]:
            window = self._windows.get(key)
            if window is None or now >= window.reset_at:
                window = self._windows[key] = _Window(limit, now + period)
            reset_after = max(window.reset_at - now, 0.0)
            if self.enforce_limits and window.count >= window.limit:
                self._set_headers(headers, route, window, reset_after)
                return self._too_many(headers, reset_after, is_global=key[0] == "global")
            window.count += 1
        self._set_headers(headers, route, window, reset_after)
        return None

    @staticmethod
    def _set_headers(headers: dict[str, str], route: str, w: _Window, reset_after: float) -> None:
        headers["X-RateLimit-Limit"] = str(w.limit)
        headers["X-RateLimit-Remaining"] = str(max(w.limit - w.count, 0))
        headers["X-RateLimit-Reset"] = f"{time.time() + reset_after:.3f}"  # epoch, wall clock
        headers["X-RateLimit-Reset-After"] = f"{reset_after:.3f}"
        headers["X-RateLimit-Bucket"] = hashlib.md5(route.encode()).hexdigest()[:16]

    @staticmethod
    def _too_many(headers: dict[str, str], retry_after: float, *, is_global: bool) -> Any:
        headers["Retry-After"] = str(math.ceil(retry_after))
        headers["X-RateLimit-Scope"] = "global" if is_global else "user"
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3)}
        return 429, {**body, "global": is_global}

    # -- route handlers: (params, json body, file names) -> (status, json) -------------------

    async def _route_get_me(self, *_: Any) -> tuple[int, Any]:
        return 200, {**self._bot_user(), "verified": True, "mfa_enabled": False}

    async def _route_get_user(self, params: dict[str, int], *_: Any) -> tuple[int, Any]:
        if (uid := params["uid"]) not in self.users:
            return _error(404, 10013, "Unknown User")
        return 200, user_payload(uid, self.users[uid], bot=uid == self.bot_id)

    async def _route_get_application(self, *_: Any) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": user_payload(DEFAULT_USER_ID, "owner"),
            "verify_key": "0" * 64,
        }

    async def _route_get_gateway(self, *_: Any) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _route_get_gateway_bot(self, *_: Any) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _route_get_channel(self, params: dict[str, int], *_: Any) -> tuple[int, Any]:
        return 200, self.channels[params["cid"]].payload(self.users, False)

    async def _route_create_dm(self, _: Any, body: Json, *__: Any) -> tuple[int, Any]:
        uid = int((body or {}).get("recipient_id", 0))
        if uid not in self.users:
            return _error(404, 10013, "Unknown User")
        channel = next((c for c in self.channels.values() if c.recipient_id == uid), None)
        if channel is None:
            channel = FakeChannel(self._snowflakes.next(), self.users[uid], recipient_id=uid)
            self.channels[channel.channel_id] = channel
        return 200, channel.payload(self.users, False)

    async def _route_typing(self, params: dict[str, int], *_: Any) -> tuple[int, Any]:
        self.typing.append(params["cid"])
        return 204, None

    async def _route_message_get(self, params: dict[str, int], *_: Any) -> tuple[int, Any]:
        msg = self._find(params["cid"], params["mid"])
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        return 200, self._message_payload(msg)

    async def _route_message_create(
        self, params: dict[str, int], body: Json, files: list[tuple[str, bytes]]
    ) -> tuple[int, Any]:
        body = body or {}
        cid = params["cid"]
        content = body.get("content") or ""
        if len(content) > MAX_CONTENT:
            return _too_long()
        if not (content or body.get("embeds") or files or body.get("sticker_ids")):
            return _error(400, 50006, "Cannot send an empty message")
        reference = body.get("message_reference")
        if reference is not None:
            ref_id = int(reference.get("message_id", 0))
            if self._find(cid, ref_id) is None and reference.get("fail_if_not_exists", True):
                err = {"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}
                errors = {"message_reference": {"_errors": [err]}}
                return _error(400, 50035, "Invalid Form Body", errors=errors)
        channel = self.channels[cid]
        msg = FakeMessage(cid, self._snowflakes.next(), content, self.bot_id, channel.guild_id)
        msg.history.append(content)
        msg.allowed_mentions = body.get("allowed_mentions")
        msg.message_reference = reference
        msg.embeds, msg.attachments = list(body.get("embeds") or []), [n for n, _ in files]
        self.messages.setdefault(cid, {})[msg.message_id] = msg
        for name, data in files:
            self.files.uploads.append(Upload(cid, msg.message_id, name, data, content))
        payload = self._message_payload(msg)
        await self._echo("MESSAGE_CREATE", payload)
        return 200, payload

    async def _route_message_edit(
        self, params: dict[str, int], body: Json, *_: Any
    ) -> tuple[int, Any]:
        body = body or {}
        msg = self._find(params["cid"], params["mid"])
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        if msg.author_id != self.bot_id:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        if "content" in body:
            content = body["content"] or ""
            if len(content) > MAX_CONTENT:
                return _too_long()
            msg.content = content
        if "embeds" in body:
            msg.embeds = list(body["embeds"] or [])
        if body.get("allowed_mentions") is not None:
            msg.allowed_mentions = body["allowed_mentions"]
        msg.edits += 1
        msg.history.append(msg.content)
        msg.edited_at = snowflake_time(self._snowflakes.next())
        payload = self._message_payload(msg)
        await self._echo("MESSAGE_UPDATE", payload)
        return 200, payload

    async def _route_message_delete(self, params: dict[str, int], *_: Any) -> tuple[int, Any]:
        msg = self._find(params["cid"], params["mid"])
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        msg.deleted = True
        event = {"id": str(msg.message_id), "channel_id": str(msg.channel_id)}
        if msg.guild_id is not None:
            event["guild_id"] = str(msg.guild_id)
        await self._echo("MESSAGE_DELETE", event)
        return 204, None


def _hang_up(request: web.Request) -> web.Response:
    """Close the connection without answering; the client sees ServerDisconnectedError."""
    assert request.transport is not None
    request.transport.close()
    return web.Response()  # never written: the transport is gone


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """JSON body, or discord.py's multipart upload (`payload_json` + files: name, bytes)."""
    if not request.can_read_body:
        return None, []
    if request.content_type == "multipart/form-data":
        form = await request.post()
        files = [(f.filename, f.file.read()) for f in form.values() if isinstance(f, web.FileField)]
        raw = form.get("payload_json")
        return (json.loads(raw) if isinstance(raw, str) else None), files
    text = await request.text()
    try:
        return json.loads(text), []
    except ValueError:
        return text, []
