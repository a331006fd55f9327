"""The web chat's HTTP surface (public: the names and shapes below are relied upon).

    GET    /                                  the page (no token needed; it sends one)
    GET    /static/{name}                     *.js, style.css, favicon.svg, vendor/...
    GET    /api/info                          {"model", "boot"} (boot changes on a restart)
    POST   /api/messages                      {"text", "session"?} -> 202 {"run_id", "session"}
                                              or multipart/form-data: fields text, session and
                                              files -> 202 {..., "attachments", "rejected"}
    GET    /api/media/{id}                    a stored file (uploads, generated images)
    GET    /api/runs/{run_id}/events          text/event-stream; resumes after Last-Event-ID
    GET    /api/sessions                      [{"id", "title", "created", "updated"}], newest first
    PATCH  /api/sessions/{session}            {"title"} -> {"id", "title"}; 404 if unknown
    DELETE /api/sessions/{session}            204 (stops its reply, forgets its history)
    GET    /api/sessions/{session}/messages   [{"role", "text", ...}] (see WebChatChannel.history)
    GET    /api/sessions/{session}/events     text/event-stream: messages outside replies
                                              (``notice``, ``attachment``, e.g. a reminder)
                                              from now on, or after Last-Event-ID; never ends

When ``channels.web.token`` is set, every ``/api/*`` call needs ``Authorization: Bearer <token>``
or ``?token=<token>`` (EventSource cannot send headers); 401 otherwise (checked by the server's
guard, `picobot.runtime.guard`, with Host, Origin and ``Content-Type: application/json``).
A POST over the session's or the client address's rate (``channels.web.inbound_rate``,
``address_rate``) is answered 429 ``{"error"}`` with ``Retry-After``; a full disk 503.

An event stream ends after ``done``, on shutdown, when the client goes away, or when the client
falls too far behind (it reconnects with ``Last-Event-ID`` and resumes without a gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from importlib import resources
from pathlib import PurePosixPath
from typing import Any, Protocol

from aiohttp import web

from picobot.core.channel import FileStore
from picobot.core.errors import BusClosed, StorageError
from picobot.core.messages import Attachment
from picobot.webui.broker import Event, Overflowed, RunBroker, RunsFull, Subscription, UnknownRun
from picobot.webui.limits import TooManyMessages
from picobot.webui.uploads import FormError, media_response, read_form

__all__ = ["HEARTBEAT_SECONDS", "encode_event", "routes"]

HEARTBEAT_SECONDS = 15.0  # an SSE comment keeps proxies from closing an idle stream
DISCONNECT_POLL_SECONDS = 1.0  # aiohttp has no "client went away" awaitable for a GET
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TITLE = 200
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
SECURITY_HEADERS = {
    # Scripts and styles only from our own files: model output can never run as code.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token may be in the page's URL once
    "Cache-Control": "no-cache",
}


class WebChat(Protocol):
    """What the routes need of the web chat channel (`channels.webchat_channel`)."""

    broker: RunBroker
    max_text: int
    model: str  # the name of the model that answers, for the page's header
    boot: str  # changes when the run logs are lost (a restart)

    @property
    def media(self) -> FileStore | None: ...

    async def accept(
        self,
        text: str,
        session: str,
        attachments: tuple[Attachment, ...] = (),
        address: str = "",
    ) -> str: ...

    async def history(self, session: str) -> list[dict[str, Any]]: ...

    def describe(self, attachment: Attachment) -> dict[str, Any]: ...

    async def sessions(self) -> list[dict[str, Any]]: ...

    async def rename_session(self, session: str, title: str) -> bool: ...

    async def delete_session(self, session: str) -> None: ...

    def session_events(self, session: str, after: int | None) -> Subscription: ...


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a lone surrogate from JSON "\ud800"
        return False
    return True


def _retry_later(status: int, reason: str, seconds: int = 60) -> web.Response:
    response = error(status, reason)
    response.headers["Retry-After"] = str(seconds)
    return response


def encode_event(event: Event) -> bytes:
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.name}\ndata: {data}\n\n".encode()


async def _accept(
    channel: WebChat,
    request: web.Request,
    text: str,
    session: str,
    attachments: tuple[Attachment, ...] = (),
) -> str | web.Response:
    """The run id of the accepted message, or the answer that refuses it."""
    try:
        return await channel.accept(text, session, attachments, address=request.remote or "")
    except TooManyMessages as exc:
        return _retry_later(429, exc.reason)
    except RunsFull:
        return _retry_later(429, "too many replies in progress; try again shortly")
    except BusClosed:
        return error(503, "shutting down; try again shortly")
    except StorageError:  # logged once by the daemon's storage watch
        return _retry_later(503, "cannot store messages now (disk full?); try again later")


def routes(channel: WebChat) -> list[web.RouteDef]:
    """The web chat's routes, bound to `channel` (its broker, sink, history and limits)."""
    pages = _read_static()  # served from memory: no path is ever built from a request

    async def page(request: web.Request) -> web.Response:
        return _static("index.html", pages)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in pages or name == "index.html":
            raise web.HTTPNotFound()
        return _static(name, pages)

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"model": channel.model, "boot": channel.boot})

    async def post_message(request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            return await post_form(request)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body must be JSON")
        except RecursionError:
            return error(400, "the body is nested too deeply")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        text, session = body.get("text"), body.get("session")
        if not isinstance(text, str) or not text.strip():
            return error(400, "text must be a non-empty string")
        if not _valid_unicode(text):
            return error(400, "text is not valid Unicode (a lone surrogate?)")
        if len(text) > channel.max_text:
            return error(400, f"text is longer than {channel.max_text} characters")
        if session is None or session == "":
            session = secrets.token_hex(16)  # unguessable: it names a conversation
        elif not isinstance(session, str) or not SESSION_ID.fullmatch(session):
            return error(400, "session must be 1-64 letters, digits, '-' or '_'")
        run_id = await _accept(channel, request, text, session)
        if isinstance(run_id, web.Response):
            return run_id
        return web.json_response({"run_id": run_id, "session": session}, status=202)

    async def post_form(request: web.Request) -> web.Response:
        if channel.media is None:
            return error(503, "file uploads are not available")
        try:
            form = await read_form(request, channel.media, channel.max_text)
        except FormError as exc:
            return error(400, str(exc))
        session = form.session or secrets.token_hex(16)
        if not SESSION_ID.fullmatch(session):
            return error(400, "session must be 1-64 letters, digits, '-' or '_'")
        if not form.text.strip() and not form.attachments:
            reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in form.rejected)
            return error(400, reasons or "send a text or a file")
        run_id = await _accept(channel, request, form.text, session, tuple(form.attachments))
        if isinstance(run_id, web.Response):
            return run_id
        body = {
            "run_id": run_id,
            "session": session,
            "attachments": [channel.describe(a) for a in form.attachments],
            "rejected": form.rejected,
        }
        return web.json_response(body, status=202)

    async def get_media(request: web.Request) -> web.StreamResponse:
        if channel.media is None:
            return error(404, "no such file")
        return media_response(channel.media, request.match_info["media_id"])

    async def run_events(request: web.Request) -> web.StreamResponse:
        raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0"
        try:
            after = max(0, int(raw))
        except ValueError:
            return error(400, "Last-Event-ID must be an integer")
        try:
            sub = channel.broker.subscribe(request.match_info["run_id"], after)
        except UnknownRun:
            return error(404, "no such run (it may have expired)")
        return await _stream(request, sub)

    async def session_messages(request: web.Request) -> web.Response:
        session = request.match_info["session"]
        if not SESSION_ID.fullmatch(session):
            return error(400, "bad session id")
        return web.json_response(await channel.history(session))

    async def session_events(request: web.Request) -> web.StreamResponse:
        session = request.match_info["session"]
        if not SESSION_ID.fullmatch(session):
            return error(400, "bad session id")
        raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        try:
            after = None if raw is None else max(0, int(raw))
        except ValueError:
            return error(400, "Last-Event-ID must be an integer")
        try:
            sub = channel.session_events(session, after)
        except RunsFull:
            return error(503, "too many event streams; try again later")
        return await _stream(request, sub)

    async def list_sessions(request: web.Request) -> web.Response:
        return web.json_response(await channel.sessions())

    async def rename_session(request: web.Request) -> web.Response:
        session = request.match_info["session"]
        if not SESSION_ID.fullmatch(session):
            return error(400, "bad session id")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body must be JSON")
        title = body.get("title") if isinstance(body, dict) else None
        if not isinstance(title, str) or not title.strip():
            return error(400, "title must be a non-empty string")
        if len(title) > MAX_TITLE:
            return error(400, f"title is longer than {MAX_TITLE} characters")
        if not await channel.rename_session(session, title.strip()):
            return error(404, "no such conversation")
        return web.json_response({"id": session, "title": title.strip()})

    async def delete_session(request: web.Request) -> web.Response:
        session = request.match_info["session"]
        if not SESSION_ID.fullmatch(session):
            return error(400, "bad session id")
        await channel.delete_session(session)
        return web.Response(status=204)

    return [
        web.get("/", page),
        web.get("/static/{name:.+}", static),
        web.get("/api/info", info),
        web.post("/api/messages", post_message),
        web.get("/api/runs/{run_id}/events", run_events),
        web.get("/api/sessions", list_sessions),
        web.patch("/api/sessions/{session}", rename_session),
        web.delete("/api/sessions/{session}", delete_session),
        web.get("/api/sessions/{session}/messages", session_messages),
        web.get("/api/sessions/{session}/events", session_events),
        web.get("/api/media/{media_id}", get_media),
    ]


async def _stream(request: web.Request, sub: Subscription) -> web.StreamResponse:
    """Starlette's StreamingResponse shape: send events and watch for the client leaving;
    whichever ends first cancels the other."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    try:
        await response.prepare(request)
        sender = asyncio.create_task(_send_events(response, sub))
        watcher = asyncio.create_task(_wait_for_disconnect(request))
        try:
            await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, watcher):
                task.cancel()
            for task in (sender, watcher):
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
        if sender.done() and not sender.cancelled() and sender.exception() is None:
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
    finally:
        sub.close()
    return response


async def _send_events(response: web.StreamResponse, sub: Subscription) -> None:
    await response.write(b"retry: 2000\n\n")  # EventSource reconnects after 2 s
    events = aiter(sub)
    while True:
        try:
            async with asyncio.timeout(HEARTBEAT_SECONDS):
                event = await anext(events)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")
            continue
        except (StopAsyncIteration, Overflowed):
            return  # done, shutdown, or too slow (the client resumes by Last-Event-ID)
        await response.write(encode_event(event))


async def _wait_for_disconnect(request: web.Request) -> None:
    # aiohttp neither cancels handlers on disconnect (handler_cancellation is off, which the
    # webhooks rely on) nor offers an awaitable for it on a body-less GET: look at the transport.
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)


def _read_static() -> dict[str, bytes]:
    """Every servable file under static/ (and static/vendor/), by its path there."""
    found: dict[str, bytes] = {}
    root = resources.files("picobot.webui").joinpath("static")
    for folder, prefix in ((root, ""), (root.joinpath("vendor"), "vendor/")):
        for item in folder.iterdir():
            if item.is_file() and PurePosixPath(item.name).suffix in CONTENT_TYPES:
                found[prefix + item.name] = item.read_bytes()
    return found


def _static(name: str, pages: dict[str, bytes]) -> web.Response:
    kind = CONTENT_TYPES[PurePosixPath(name).suffix]
    response = web.Response(body=pages[name], content_type=kind, charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response
