"""picobot's one HTTP server (aiohttp): health, readiness, metrics, and every route the
channels bring (webhooks, the web chat)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from channels.base import Channel

STARTED = time.monotonic()


def make_app(
    channels: Mapping[str, Channel],
    status: Callable[[], dict[str, object]],
    routes: Iterable[web.AbstractRouteDef] = (),
    *,
    client_max_size: int = 1 << 20,
) -> web.Application:
    app = web.Application(client_max_size=client_max_size)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        states = {name: ch.state.value for name, ch in channels.items()}
        failing = sorted(name for name, ch in channels.items() if not ch.connected)
        body = {"ready": not failing, "channels": states, "failing": failing}
        return web.json_response(body, status=503 if failing else 200)

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def status_view(request: web.Request) -> web.Response:
        return web.json_response(status())

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", status_view)
    app.router.add_routes(list(routes))
    return app
