"""Event half of the fake Slack: Socket Mode (WebSocket, envelopes, acks, redelivery),
event builders, and signed Events API HTTP posts.

`FakeSlack` (fake_slack.py) mixes this in; it is not meant to be used on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"
APP_ID = "A1"
VERIFICATION_TOKEN = "fake-verification-token"


class HttpReply(NamedTuple):
    status: int
    body: str


def slack_signature(signing_secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class SocketModeMixin:
    """Everything about events reaching the app: Socket Mode and signed HTTP posts."""

    def _init_socket(self) -> None:
        self._cond = asyncio.Condition()  # notified after every API call, frame and connect
        self.acks: list[str] = []
        # envelope_id -> the full ack frame (it may carry a response payload)
        self.ack_frames: dict[str, dict[str, Any]] = {}
        self.envelopes: list[dict[str, Any]] = []  # every envelope sent, redeliveries included
        self.socket_received: list[Any] = []  # client frames that are not acks
        self.socket_connected = asyncio.Event()
        self.socket_connections = 0  # accepted WebSocket handshakes so far
        self.peak_sockets = 0  # the most connections open at once (Slack allows up to 10)
        # Like Slack: re-send an envelope not acked within this many seconds (None = never).
        self.redeliver_unacked_after: float | None = None
        self.max_redeliveries = 3  # Slack retries an event three times
        self._tickets: set[str] = set()
        self._ticket_seq = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._event_seq = 0
        self._ts_seq = 0

    # ---- helpers shared with the Web API half ----

    def next_ts(self) -> str:
        """Unique, increasing Slack-style ts ("1700000000.000100"); shared by events and posts."""
        self._ts_seq += 1
        micros = self._ts_seq * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds; re-checked after every call, frame and (dis)connect."""
        async with self._cond:
            try:
                async with asyncio.timeout(timeout):
                    await self._cond.wait_for(predicate)
            except TimeoutError:
                raise TimeoutError(f"fake Slack: condition not met within {timeout}s") from None

    def _issue_ticket(self) -> str:
        self._ticket_seq += 1
        ticket = str(self._ticket_seq)
        self._tickets.add(ticket)
        return ticket

    # ---- event builders ----

    def message_event(
        self,
        user: str,
        text: str,
        channel: str,
        *,
        channel_type: str = "channel",
        ts: str | None = None,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        ts = ts or self.next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "channel_type": channel_type,
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
            "team": TEAM_ID,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event.update(subtype="file_share", files=files, upload=False)
        return event

    def dm_event(
        self,
        user: str,
        text: str,
        channel: str = "D1",
        ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return self.message_event(user, text, channel, channel_type="im", ts=ts, files=files)

    def mention_event(
        self,
        user: str,
        text: str,
        channel: str = "C1",
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        mention = f"<@{BOT_USER_ID}>"
        ts = ts or self.next_ts()
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": user,
            "text": text if mention in text else f"{mention} {text}",
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
            "team": TEAM_ID,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def event_callback(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """The Events API body around `event` (same shape over Socket Mode and HTTP)."""
        if event_id is None:
            self._event_seq += 1
            event_id = f"Ev{self._event_seq:010d}"
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    # ---- Socket Mode ----

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            raise web.HTTPUnauthorized(text="unknown ticket")
        ws = web.WebSocketResponse(autoping=True)  # answers the SDK's pings for us
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        self.peak_sockets = max(self.peak_sockets, len(self._live_sockets()))
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {
                    "host": "fake-slack",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": APP_ID},
            }
        )
        self.socket_connected.set()
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_client_frame(msg.data)
        finally:
            self._sockets.remove(ws)
            if not self._live_sockets():
                self.socket_connected.clear()
            await self._notify()
        return ws

    @property
    def open_sockets(self) -> int:
        """Socket Mode connections open now."""
        return len(self._live_sockets())

    def _live_sockets(self) -> list[web.WebSocketResponse]:
        return [ws for ws in self._sockets if not ws.closed]

    async def _on_client_frame(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            frame = data
        if isinstance(frame, dict) and isinstance(frame.get("envelope_id"), str):
            envelope_id = frame["envelope_id"]
            self.acks.append(envelope_id)
            self.ack_frames[envelope_id] = frame
        else:
            self.socket_received.append(frame)
        await self._notify()

    async def _socket(self, timeout: float) -> web.WebSocketResponse:
        # Slack delivers to one open connection; use the newest one.
        await self.wait_for(lambda: bool(self._live_sockets()), timeout)
        return self._live_sockets()[-1]

    async def push_event(
        self,
        event: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        timeout: float = 5.0,
    ) -> str:
        """Send `event` in an `events_api` envelope; returns its envelope_id."""
        envelope = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
            "payload": self.event_callback(event),
        }
        await self._send_envelope(envelope, timeout)
        return envelope["envelope_id"]

    async def _send_envelope(self, envelope: dict[str, Any], timeout: float = 5.0) -> None:
        ws = await self._socket(timeout)
        self.envelopes.append(envelope)
        await ws.send_json(envelope)
        delay = self.redeliver_unacked_after
        if delay is not None and envelope["retry_attempt"] < self.max_redeliveries:
            task = asyncio.create_task(self._redeliver_later(envelope, delay))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

    async def _redeliver_later(self, envelope: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)  # this *is* Slack's ack timeout, not a synchronisation hack
        if envelope["envelope_id"] in self.ack_frames:
            return
        # Same event_id, fresh envelope_id: apps must dedupe on event_id, never envelope_id.
        retry = {
            **envelope,
            "envelope_id": str(uuid.uuid4()),
            "retry_attempt": envelope["retry_attempt"] + 1,
            "retry_reason": "timeout",
        }
        try:
            await self._send_envelope(retry)
        except TimeoutError:
            pass  # no connection came back; real Slack would give up eventually too

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until the client acks `envelope_id`; returns the ack frame."""
        await self.wait_for(lambda: envelope_id in self.ack_frames, timeout)
        return self.ack_frames[envelope_id]

    def envelopes_for(self, event_id: str) -> list[dict[str, Any]]:
        """Every delivery (first try and retries) of one event."""
        return [e for e in self.envelopes if e["payload"]["event_id"] == event_id]

    async def send_socket_json(self, frame: dict[str, Any], timeout: float = 5.0) -> None:
        ws = await self._socket(timeout)
        await ws.send_json(frame)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect (Slack does this every few hours)."""
        await self.send_socket_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}
        )

    async def disconnect_socket(self) -> None:
        """Close every open WebSocket from the server side (a network hiccup)."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"fake-slack disconnect")

    async def _stop_socket(self) -> None:
        for task in list(self._timers):
            task.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        await self.disconnect_socket()

    # ---- signed HTTP Events API ----

    async def post_http_event(
        self,
        url: str,
        event: dict[str, Any],
        *,
        signing_secret: str,
        timestamp: int | None = None,
        bad_signature: bool = False,
        retry_attempt: int = 0,
    ) -> HttpReply:
        """POST an event_callback to the app like Slack's Events API, signed."""
        headers = {}
        if retry_attempt:
            headers = {
                "X-Slack-Retry-Num": str(retry_attempt),
                "X-Slack-Retry-Reason": "http_timeout",
            }
        body = json.dumps(self.event_callback(event))
        return await self._post_signed(url, body, signing_secret, timestamp, bad_signature, headers)

    async def post_url_verification(
        self, url: str, *, signing_secret: str, challenge: str = "fake-challenge"
    ) -> HttpReply:
        body = json.dumps(
            {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        )
        return await self._post_signed(url, body, signing_secret, None, False, {})

    async def _post_signed(
        self,
        url: str,
        body: str,
        secret: str,
        timestamp: int | None,
        bad_signature: bool,
        extra_headers: dict[str, str],
    ) -> HttpReply:
        # Wall-clock seconds: that is what SignatureVerifier compares against.
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = slack_signature(secret + "-wrong" if bad_signature else secret, ts, body)
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            **extra_headers,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body.encode(), headers=headers) as resp,
        ):
            return HttpReply(resp.status, await resp.text())
