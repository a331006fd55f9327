"""picobot's one HTTP server (aiohttp): health, readiness, metrics, and every route the
channels bring (webhooks, the web chat)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from picobot.core.channel import Channel, GuardsHttp
from picobot.runtime.guard import Access, guard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    channels: Mapping[str, Channel],
    status: Callable[[], Awaitable[dict[str, object]]],
    routes: Iterable[web.AbstractRouteDef] = (),
    *,
    client_max_size: int = 1 << 20,
    expected: Callable[[], Iterable[str]] = tuple,
    checks: Callable[[], Mapping[str, str]] = dict,
    access: Access | None = None,
    storage: Callable[[], str | None] = lambda: None,
    detail: Callable[[], Mapping[str, object]] = dict,
) -> web.Application:
    """The shared app over the live `channels` mapping (a reload may replace its entries).

    `expected()` names every enabled channel, so one that could not even be created (its
    library missing) still shows in /readyz as failing. A channel that `GuardsHttp` may
    refuse any request by returning a response; it is asked on every request. `access` is
    checked before anything (Host, CSRF, the token; see `picobot.runtime.guard`). `storage()`
    names a problem with data_dir (deleted, disk full) that makes /readyz fail. `checks()`
    names other things readiness depends on (the cluster's Redis), each "ok" or what is
    wrong; `detail()`
    adds keys to the /readyz body (the MCP servers' states) without deciding readiness.
    """

    @web.middleware
    async def channel_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        for channel in list(channels.values()):
            if isinstance(channel, GuardsHttp) and (refusal := channel.http_guard(request)):
                return refusal
        response: web.StreamResponse = await handler(request)
        return response

    middlewares: list[Middleware] = [guard(access or Access()), channel_guard]
    app = web.Application(client_max_size=client_max_size, middlewares=middlewares)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        states = {name: "unavailable" for name in expected() if name not in channels}
        states |= {name: ch.state.value for name, ch in channels.items()}
        failing = sorted(name for name in states if states[name] != "connected")
        more = dict(checks())
        failing += sorted(name for name, state in more.items() if state != "ok")
        body: dict[str, object] = {
            "ready": not failing,
            "channels": states,
            "failing": failing,
            **detail(),
        }
        if more:
            body["checks"] = more
        if (problem := storage()) is not None:
            failing.append("storage")
            body |= {"ready": False, "storage": problem}
        return web.json_response(body, status=503 if failing else 200)

    async def metrics(request: web.Request) -> web.Response:
        await status()  # refreshes the gauges sampled on demand (queue depths)
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def status_view(request: web.Request) -> web.Response:
        return web.json_response(await status())

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", status_view)
    app.router.add_routes(list(routes))
    return app
