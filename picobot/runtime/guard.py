"""Who may use the HTTP server, checked once for every route (see docs/security.md).

- ``Host`` must be a name this server is meant to answer to (loopback names, the bound address,
  ``http.allowed_hosts``): a page on another site cannot reach us through DNS rebinding.
- A state-changing ``/api/*`` call must, when the browser says where it comes from
  (``Origin``), come from this server's own origin, and a POST must be ``application/json``
  or carry ``X-Picobot`` (the page's uploads): a form or a ``text/plain`` fetch from another
  site is refused (CSRF).
- With ``channels.web.token`` set, every ``/api/*`` call (the web chat's and ``/api/status``)
  needs it, whatever channels are enabled. Without one the server is on loopback (the config
  refuses anything else).
- Errors are JSON ``{"error": ...}``, never a traceback: bad bytes get a 4xx.

Webhook paths (a platform's POSTs, signed by the platform) only get the JSON errors.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from picobot.config import Config

__all__ = ["Access", "guard"]

log = logging.getLogger("picobot.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CLIENT_HEADER = "X-Picobot"  # sent by the page; a custom header forces a CORS preflight


@dataclass(frozen=True, slots=True)
class Access:
    """What the guard enforces; fixed at startup (a reload never changes it)."""

    token: str | None = None  # needed on /api/* when set
    hosts: frozenset[str] | None = LOOPBACK_NAMES  # allowed Host names; None: any

    @classmethod
    def of(cls, config: Config) -> Access:
        token = config.channels.web.token
        host = config.http.host.lower().strip("[]")
        extra = frozenset(h.lower().strip("[]") for h in config.http.allowed_hosts)
        hosts: frozenset[str] | None
        if host in WILDCARDS and not extra:
            hosts = None  # reachable by any name; the token (required here) guards /api/*
        else:
            hosts = LOOPBACK_NAMES | extra | ({host} - WILDCARDS)
        return cls(token.get_secret_value() if token else None, hosts)

    def allows_host(self, host: str) -> bool:
        return self.hosts is None or host_name(host) in self.hosts

    def token_ok(self, request: web.Request) -> bool:
        if not self.token:
            return True
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        given = given or request.query.get("token", "")
        # Bytes, any bytes: a header that is not Latin-1 must be a 401, not a crash.
        return hmac.compare_digest(_raw(given), _raw(self.token))


def host_name(host: str) -> str:
    """The name in a Host header, without the port: "[::1]:8765" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, _, _ = host.partition(":") if host.count(":") == 1 else (host, "", "")
    return name


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _browser_facing(path: str) -> bool:
    return path == "/" or path == "/metrics" or path.startswith(("/api/", "/static/"))


def guard(access: Access) -> Middleware:
    """The middleware enforcing `access`, and turning every error into JSON."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            refusal = _refusal(access, request)
            if refusal is not None:
                return refusal
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            return error(exc.status, _reason(exc))
        except (UnicodeError, RecursionError) as exc:  # bad bytes, absurd nesting
            log.info("refused a malformed request to %s: %s", request.path[:100], type(exc))
            return error(400, "malformed request")

    return middleware


def _refusal(access: Access, request: web.Request) -> web.Response | None:
    path = request.path
    if not _browser_facing(path):
        return None
    if not access.allows_host(request.host):
        return error(403, "unexpected Host header (add the name to http.allowed_hosts)")
    api = path.startswith("/api/")
    if api and request.method not in SAFE_METHODS:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return error(403, "cross-origin request refused")
        # Only a POST can come from another site without a CORS preflight (which we never
        # grant), and only as a form or text/plain: JSON it must be, or carry our own header
        # (which no cross-site form can send; the page's file uploads do).
        if (
            request.method == "POST"
            and request.content_type != "application/json"
            and CLIENT_HEADER not in request.headers
        ):
            return error(415, "Content-Type must be application/json")
    if api and not access.token_ok(request):
        return error(401, "a valid token is required")
    return None


def _reason(exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "the body is too large"
    return exc.reason or "error"
