"""Gateway half of the fake Discord: the data model, payload builders, the WebSocket session.

`FakeDiscord` (in fake_discord.py) mixes in `GatewayMixin`. discord.py 2.7 speaks to it as to
the real gateway: HELLO → (heartbeat) → IDENTIFY → READY + GUILD_CREATE…, or RESUME → replay of
missed dispatches → RESUMED. Frames are plain-text JSON unless `zlib_stream=True` and the client
asked for `compress=zlib-stream` (discord.py always asks, but accepts TEXT frames regardless).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_USER_ID = 3000

# Gateway opcodes and the intent bits the fake honours.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
# @everyone: view, send, embed, attach, read history, add reactions.
EVERYONE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 6)
SEND_MESSAGES = 1 << 11


class Snowflakes:
    """Increasing snowflake ids whose embedded timestamp is the real wall clock."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(self._last + 1, now)
        return self._last


def snowflake_time(snowflake: int) -> str:
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def user_payload(user_id: int, username: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": bot,
    }


@dataclass
class FakeChannel:
    channel_id: int
    name: str
    guild_id: int | None = None  # None → DM channel
    recipient_id: int | None = None

    def payload(self, users: dict[int, str], forbidden: bool) -> dict[str, Any]:
        if self.guild_id is None:
            rid = self.recipient_id or DEFAULT_USER_ID
            recipient = user_payload(rid, users.get(rid, f"user{rid}"))
            return {"id": str(self.channel_id), "type": 1, "recipients": [recipient], "flags": 0}
        # A forbidden channel denies SEND_MESSAGES to @everyone, so permissions_for() agrees.
        deny = SEND_MESSAGES if forbidden else 0
        overwrite = {"id": str(self.guild_id), "type": 0, "allow": "0", "deny": str(deny)}
        return {
            "id": str(self.channel_id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": 0,
            "permission_overwrites": [overwrite] if forbidden else [],
        }


@dataclass
class FakeGuild:
    guild_id: int
    name: str
    channel_ids: list[int] = field(default_factory=list)


@dataclass
class FakeMessage:
    channel_id: int
    message_id: int
    content: str
    author_id: int
    guild_id: int | None = None
    edits: int = 0
    history: list[str] = field(default_factory=list)  # every content version, original first
    deleted: bool = False
    allowed_mentions: dict[str, Any] | None = None  # from the latest create/edit that sent one
    message_reference: dict[str, Any] | None = None
    mention_ids: list[int] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)  # file names
    edited_at: str | None = None


@dataclass(eq=False)  # hashable by identity: kept in a set
class _Conn:
    """One accepted gateway WebSocket."""

    ws: web.WebSocketResponse
    path: str
    compressor: Any = None  # zlib compressobj when zlib-stream is on

    async def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        if self.compressor is None:
            await self.ws.send_str(text)
            return
        # zlib-stream: one shared deflate context; every frame ends with a sync flush
        # (b"\x00\x00\xff\xff"), which is how discord.py finds message boundaries.
        data = self.compressor.compress(text.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        await self.ws.send_bytes(data)


class GatewayMixin:
    """Gateway state and behaviour; expects FakeDiscord's attributes below."""

    token: str
    bot_id: int
    bot_name: str
    application_id: int
    heartbeat_interval_ms: int
    zlib_stream: bool
    gateway_url: str
    resume_gateway_url: str
    http_url: str
    guilds: dict[int, FakeGuild]
    messages: dict[int, dict[int, FakeMessage]]
    channels: dict[int, FakeChannel]
    users: dict[int, str]
    forbidden: set[int]
    identified: asyncio.Event
    identify_payload: dict[str, Any] | None
    _snowflakes: Snowflakes

    def _init_gateway(self) -> None:
        self.intents: int | None = None
        self.session_id: str | None = None
        self.heartbeats = 0
        self.gateway_connections: list[tuple[str, dict[str, str]]] = []  # (path, query)
        self.gateway_received: list[dict[str, Any]] = []  # every op except heartbeats
        self.resumes: list[dict[str, Any]] = []
        self._seq = 0
        self._backlog: list[dict[str, Any]] = []  # this session's dispatches, for RESUME replay
        self._conn: _Conn | None = None  # the live (identified/resumed) connection
        self._conns: set[_Conn] = set()
        # Connections that identified or resumed: Discord lets a bot run several sessions at
        # once (each gets the events); the fake notices, so tests can assert there was one.
        self._sessions: set[_Conn] = set()
        self.peak_sessions = 0  # the most sessions that were open at the same time
        self._gw_lock = asyncio.Lock()  # keeps `s` order == wire order
        self._tasks: set[asyncio.Task[Any]] = set()

    def _notify(self) -> None:
        raise NotImplementedError

    @property
    def live_sessions(self) -> int:
        """Gateway sessions open now (their socket not closed)."""
        return sum(1 for conn in self._sessions if not conn.ws.closed)

    def _session_opened(self, conn: _Conn) -> None:
        self._sessions = {c for c in self._sessions if not c.ws.closed} | {conn}
        self.peak_sessions = max(self.peak_sessions, len(self._sessions))

    def _bot_user(self) -> dict[str, Any]:
        return user_payload(self.bot_id, self.bot_name, bot=True)

    # -- payloads ---------------------------------------------------------------------------

    def _guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        gid = str(guild.guild_id)
        # Minimal but complete enough for discord.py's cache: @everyone, the bot as member.
        everyone = {"id": gid, "name": "@everyone", "permissions": str(EVERYONE_PERMISSIONS)}
        joined = snowflake_time(guild.guild_id)
        member = {"user": self._bot_user(), "roles": [], "joined_at": joined, "flags": 0}
        channels = [
            self.channels[cid].payload(self.users, cid in self.forbidden)
            for cid in guild.channel_ids
        ]
        return {
            "id": gid,
            "name": guild.name,
            "unavailable": False,
            "owner_id": str(DEFAULT_USER_ID),
            "member_count": 2,
            "roles": [{**everyone, "position": 0}],
            "channels": channels,
            "members": [member],
        }

    def _deliverable(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Apply intents like Discord: drop un-subscribed events, blank un-entitled content."""
        if self.intents is None:  # nobody identified yet: keep everything for replay
            return payload
        in_guild = "guild_id" in payload
        needed = INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES
        if not self.intents & needed:
            return None
        author = payload.get("author", {}).get("id")
        mentioned = any(u["id"] == str(self.bot_id) for u in payload.get("mentions", []))
        entitled = not in_guild or mentioned or author == str(self.bot_id)
        if self.intents & INTENT_MESSAGE_CONTENT or entitled or "content" not in payload:
            return payload
        return {**payload, "content": "", "embeds": [], "attachments": []}

    # -- test-facing gateway API ------------------------------------------------------------

    async def dispatch(self, event_name: str, data: Any) -> None:
        """Send an op-0 dispatch with the next sequence number.

        Without a live connection the dispatch is only queued, as Discord does: a RESUME
        replays it, a fresh IDENTIFY (new session) discards it.
        """
        async with self._gw_lock:
            await self._dispatch_locked(event_name, data)
        self._notify()

    async def _dispatch_locked(self, event_name: str, data: Any) -> None:
        self._seq += 1
        frame = {"op": OP_DISPATCH, "t": event_name, "s": self._seq, "d": data}
        self._backlog.append(frame)
        conn = self._conn
        if conn is not None and not conn.ws.closed:
            await conn.send(frame)

    async def send_raw(self, text: str) -> None:
        """Send an arbitrary TEXT frame on the live connection (for malformed-frame tests)."""
        if self._conn is None:
            raise RuntimeError("no live gateway connection")
        async with self._gw_lock:
            await self._conn.send(text)

    def drop_gateway(self, code: int = 4000) -> None:
        """Close the live gateway socket with `code` (4000 is resumable); returns at once."""
        conn, self._conn = self._conn, None
        if conn is None:
            raise RuntimeError("no live gateway connection")
        task = asyncio.create_task(conn.ws.close(code=code, message=b"dropped by test"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _echo(self, event_name: str, payload: dict[str, Any]) -> None:
        """Tell the bot about its own REST actions, as Discord does (MESSAGE_CREATE etc.)."""
        if self.session_id is None:
            return
        visible = self._deliverable(payload)
        if visible is not None:
            await self.dispatch(event_name, visible)

    # -- messages ---------------------------------------------------------------------------

    async def user_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int = DEFAULT_USER_ID,
        username: str = "alice",
        guild_id: int | None = None,
        mentions_bot: bool = False,
        reference_message_id: int | None = None,
        files: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A user posts in `channel_id`; dispatches MESSAGE_CREATE and returns its payload.

        `files` are attachment objects (`self.files.attachment(...)` puts them on the CDN).

        A guild channel's guild is implied; an unknown channel with no `guild_id` becomes a DM
        with the author. `mentions_bot` prefixes `<@bot_id>` and fills `mentions`.
        """
        self.users[author_id] = username
        channel = self.channels.get(channel_id)
        if channel is None:
            if guild_id is not None:
                raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
            self.channels[channel_id] = FakeChannel(channel_id, username, recipient_id=author_id)
        elif guild_id is not None and channel.guild_id != guild_id:
            raise ValueError(f"channel {channel_id} belongs to guild {channel.guild_id}")
        guild_id = self.channels[channel_id].guild_id
        reference = None
        if reference_message_id is not None:
            reference = {"message_id": str(reference_message_id), "channel_id": str(channel_id)}
            if guild_id is not None:
                reference["guild_id"] = str(guild_id)
        msg = FakeMessage(
            channel_id,
            self._snowflakes.next(),
            f"<@{self.bot_id}> {content}" if mentions_bot else content,
            author_id,
            guild_id,
            message_reference=reference,
            mention_ids=[self.bot_id] if mentions_bot else [],
        )
        msg.history.append(msg.content)
        self.messages.setdefault(channel_id, {})[msg.message_id] = msg
        payload = self._message_payload(msg)
        if files:
            payload["attachments"] = list(files)
        visible = self._deliverable(payload)
        if visible is not None:
            await self.dispatch("MESSAGE_CREATE", visible)
        return payload

    def _message_payload(self, msg: FakeMessage, *, nested: bool = False) -> dict[str, Any]:
        is_bot = msg.author_id == self.bot_id
        name = self.users.get(msg.author_id, f"user{msg.author_id}")
        payload: dict[str, Any] = {
            "id": str(msg.message_id),
            "channel_id": str(msg.channel_id),
            "author": user_payload(msg.author_id, name, bot=is_bot),
            "content": msg.content,
            "timestamp": snowflake_time(msg.message_id),
            "edited_timestamp": msg.edited_at,
            "tts": False,
            "mention_everyone": False,
            "mentions": [user_payload(u, self.users.get(u, f"user{u}")) for u in msg.mention_ids],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(msg.message_id + i + 1),
                    "filename": fname,
                    "size": 0,
                    "url": f"{self.http_url}/attachments/{fname}",
                    "proxy_url": f"{self.http_url}/attachments/{fname}",
                }
                for i, fname in enumerate(msg.attachments)
            ],
            "embeds": msg.embeds,
            "pinned": False,
            "type": 19 if msg.message_reference else 0,  # 19 = REPLY
            "flags": 0,
            "components": [],
        }
        if msg.guild_id is not None:
            payload["guild_id"] = str(msg.guild_id)
            joined = snowflake_time(msg.guild_id)
            payload["member"] = {"roles": [], "joined_at": joined, "flags": 0}
        if msg.message_reference is not None:
            payload["message_reference"] = msg.message_reference
            ref = self._find(msg.channel_id, int(msg.message_reference["message_id"]))
            if not nested:  # Discord nests one level only
                payload["referenced_message"] = ref and self._message_payload(ref, nested=True)
        return payload

    def _find(self, channel_id: int, message_id: int) -> FakeMessage | None:
        msg = self.messages.get(channel_id, {}).get(message_id)
        return None if msg is None or msg.deleted else msg

    # -- WebSocket handler ------------------------------------------------------------------

    async def _gateway_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        query = dict(request.query)
        self.gateway_connections.append((request.path, query))
        zlib_on = self.zlib_stream and query.get("compress") == "zlib-stream"
        conn = _Conn(ws, request.path, zlib.compressobj() if zlib_on else None)
        self._conns.add(conn)
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms}
            await conn.send({"op": OP_HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(conn, json.loads(msg.data))
        finally:
            self._conns.discard(conn)
            self._sessions.discard(conn)
            if self._conn is conn:
                self._conn = None
            self._notify()
        return ws

    async def _on_frame(self, conn: _Conn, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeats += 1
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        else:
            self.gateway_received.append(frame)
            if op == OP_IDENTIFY:
                await self._on_identify(conn, data)
            elif op == OP_RESUME:
                await self._on_resume(conn, data)
        self._notify()

    async def _on_identify(self, conn: _Conn, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        async with self._gw_lock:
            self.identify_payload = data
            self.intents = data.get("intents", 0)
            self.session_id = uuid.uuid4().hex
            self._seq, self._backlog, self._conn = 0, [], conn
            self._session_opened(conn)
            ready = {
                "v": 10,
                "user": self._bot_user(),
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "session_id": self.session_id,
                "resume_gateway_url": self.resume_gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
            }
            if "shard" in data:
                ready["shard"] = data["shard"]
            await self._dispatch_locked("READY", ready)
            for guild in self.guilds.values():
                await self._dispatch_locked("GUILD_CREATE", self._guild_payload(guild))
        self.identified.set()

    async def _on_resume(self, conn: _Conn, data: dict[str, Any]) -> None:
        ok = data.get("token") == self.token and data.get("session_id") == self.session_id
        if not ok:
            # d=false: not resumable; discord.py then re-IDENTIFYs via DEFAULT_GATEWAY.
            await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        async with self._gw_lock:
            self.resumes.append(data)
            self._conn = conn
            self._session_opened(conn)
            last_seen = data.get("seq") or 0
            for frame in self._backlog:
                if frame["s"] > last_seen:
                    await conn.send(frame)
            await self._dispatch_locked("RESUMED", {})

    async def _close_gateways(self) -> None:
        self._conn = None
        for conn in list(self._conns):
            await conn.ws.close(code=1001, message=b"server shutting down")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
