"""The HTTP listener, hardened against idle and half-open connections.

- A connection must send a complete request header within `HEADER_TIMEOUT` (aiohttp's
  keep-alive timer runs from the connection's start and closes a connection that has no
  request yet), and an idle keep-alive connection goes after as long.
- At most `cap` connections are open, well below the open-file limit, so ``accept()`` never
  runs out of file descriptors (asyncio accepts up to `backlog` connections in a burst before
  any of them reaches us: the limit keeps room for a burst). At the cap, the oldest connection
  that is not in a request
  (half-open, or idle between requests) is closed to make room; if every one is in a request
  (e.g. event streams), the new one is answered 503 and closed. Logged once per
  `LOG_INTERVAL`.
- `raise_fd_limit()` lifts the soft open-file limit to the hard one at start.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from picobot.core.errors import StartupError

__all__ = [
    "HEADER_TIMEOUT",
    "ConnectionLimit",
    "LimitedSite",
    "accept_backlog",
    "connection_cap",
    "quiet_accept_errors",
    "quiet_client_errors",
    "raise_fd_limit",
]

log = logging.getLogger("picobot.http")

HEADER_TIMEOUT = 15.0  # seconds for a connection to send a request header (and to idle)
FD_RESERVE = 128  # descriptors kept for databases, platform clients, tool processes
MAX_BACKLOG = 128  # listen backlog, and the most connections asyncio accepts in one burst
MAX_CONNECTIONS = 10_000
FD_TARGET = 65_536  # the soft limit asked for when the hard one is unlimited
LOG_INTERVAL = 60.0
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: 40\r\n\r\n"
    b'{"error": "too many open connections"}\r\n'
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
        else:
            log.info("open-file limit raised from %d to %d", soft, target)
            soft = target
    return int(soft)


def accept_backlog(fd_limit: int) -> int:
    """The listen backlog for `fd_limit` descriptors (also asyncio's accept burst)."""
    return max(8, min(MAX_BACKLOG, fd_limit // 8))


def connection_cap(fd_limit: int) -> int:
    """Connections allowed with `fd_limit` descriptors: room stays for an accept burst and
    for everything else (databases, platform clients, tool processes)."""
    spare = min(FD_RESERVE, fd_limit // 4) + accept_backlog(fd_limit)
    return max(8, min(MAX_CONNECTIONS, fd_limit - spare))


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: every connection is in a request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(BUSY_ANSWER)
        transport.close()


class ConnectionLimit:
    """Caps the server's open connections; see the module docstring.

    `middleware` must be on the app: it marks connections that are in a request.
    """

    def __init__(
        self, cap: int, *, backlog: int = MAX_BACKLOG, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cap = cap
        self.backlog = backlog
        self.clock = clock
        self._busy: dict[RequestHandler, int] = {}  # in a request (an entry per request)
        self._closing: set[RequestHandler] = set()  # evicted, not yet gone
        # Handed out but maybe not connected yet: asyncio makes a burst of them before any
        # connection_made, so the server's own list lags behind (by one loop iteration).
        self._pending: set[RequestHandler] = set()
        self._logged_at: float | None = None
        self.evicted = 0
        self.refused = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        self._busy[protocol] = self._busy.get(protocol, 0) + 1
        try:
            return await handler(request)
        finally:
            self._busy[protocol] -= 1
            if not self._busy[protocol]:
                del self._busy[protocol]

    def fit(self, fd_limit: int) -> None:
        """Size the cap and the backlog for `fd_limit` open files."""
        self.cap, self.backlog = connection_cap(fd_limit), accept_backlog(fd_limit)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        def factory() -> asyncio.BaseProtocol:
            connected = server.connections
            if self._closing:
                self._closing.intersection_update(connected)
            open_now = [h for h in connected if h not in self._closing]
            counted = len(open_now) + len(self._pending.difference(connected))
            if counted >= self.cap:
                self._report(counted)
                idle = next((h for h in open_now if h not in self._busy), None)
                if idle is None:
                    self.refused += 1
                    return _Busy()
                self.evicted += 1
                self._closing.add(idle)
                idle.force_close()
            handler = server()
            # Its connection_made is scheduled right after this: by two loop turns it is in
            # `server.connections` (or already gone).
            self._pending.add(handler)
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._pending.discard, handler)
            return handler

        return factory

    def _report(self, count: int) -> None:
        now = self.clock()
        if self._logged_at is None or now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            log.warning(
                "http: %d connections open (the cap); closing the oldest idle ones "
                "(%d closed, %d refused so far)",
                count,
                self.evicted,
                self.refused,
            )


class LimitedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionLimit`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limit: ConnectionLimit) -> None:
        super().__init__(runner)
        self._host, self._port, self._limit = host, port, limit

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._limit.protocol_factory(server),
                self._host,
                self._port,
                backlog=self._limit.backlog,
            )
        except OSError as exc:
            hint = (
                "another program (another picobot?) listens there; stop it or change http.port"
                if exc.errno == errno.EADDRINUSE
                else "check http.host and http.port"
            )
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(
                f"cannot listen on {self._host}:{self._port}: {reason}; {hint}"
            ) from None


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Out of file descriptors in ``accept()``: one line per `LOG_INTERVAL`, not a traceback
    per attempt (asyncio retries every second by itself)."""
    previous = loop.get_exception_handler()
    last: list[float] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "out of system resource" in str(context.get("message", "")):
            now = time.monotonic()
            if not last or now - last[0] >= LOG_INTERVAL:
                last[:] = [now]
                log.warning("http: accept() failed: %s", context.get("exception"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a 20 000-character URL, bad header bytes) as an
    error with a traceback; it is the client's mistake: one info line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            log.info("refused a malformed request from %s: %s", remote, exc.message[:100])
            return False
        return True


def quiet_client_errors() -> None:
    """Install `_MalformedRequests` on aiohttp's server logger (idempotent)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server_log.filters):
        server_log.addFilter(_MalformedRequests())


class HttpServer:
    """picobot's one listening socket: the app behind a connection cap below the file limit,
    with a time limit on request headers."""

    def __init__(self) -> None:
        self.limit = ConnectionLimit(cap=0)  # its cap is set when the server starts
        self._runner: web.AppRunner | None = None

    async def start(self, app: web.Application, host: str, port: int) -> None:
        """Serve `app` on `host:port`.

        :raises OSError: if the address cannot be bound (e.g. in use).
        """
        self.limit.fit(raise_fd_limit())
        app.middlewares.append(self.limit.middleware)
        quiet_accept_errors(asyncio.get_running_loop())
        quiet_client_errors()
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=HEADER_TIMEOUT
        )
        await self._runner.setup()
        await LimitedSite(self._runner, host, port, self.limit).start()

    @property
    def port(self) -> int | None:
        """The bound port, once serving."""
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
