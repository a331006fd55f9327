"""The `fetch` tool against a real aiohttp server on 127.0.0.1.

Loopback is private, so these tests either allow it (`allow_private`) or use an address
policy that allows 127.0.0.1 only, to see a redirect to another local address refused."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from picobot.agent.fetch import MAX_CHARS, IPAddress, fetch_tool, public_only
from picobot.agent.tools import ToolContext, ToolRegistry

PAGE = """<html><head><title>T</title><style>p {color: red}</style></head>
<body><h1>Hello</h1><p>Some <b>bold</b> text and <a href="/x">a link</a>.</p>
<script>alert('no')</script></body></html>"""


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="word " * 1_000_000, content_type="text/plain")

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG....", content_type="image/png")

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/big", big)
    app.router.add_get("/png", binary)
    app.router.add_get("/missing", missing)
    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def only_127_0_0_1(ip: IPAddress) -> bool:
    return ip == ipaddress.ip_address("127.0.0.1")


async def fetch(url: str, **kwargs: object) -> tuple[str, bool]:
    tools = ToolRegistry([fetch_tool(**kwargs)])  # type: ignore[arg-type]
    result = await tools.call("fetch", json.dumps({"url": url}), ToolContext("s"))
    return result.content, result.error


async def test_html_becomes_readable_text(site: str) -> None:
    text, error = await fetch(f"{site}/", allow_private=True)
    assert not error
    assert "# Hello" in text and "**bold**" in text and "a link" in text
    assert "alert" not in text and "color: red" not in text


async def test_size_is_capped(site: str) -> None:
    text, error = await fetch(f"{site}/big", allow_private=True)
    assert not error and text.endswith("[page truncated]") and len(text) < MAX_CHARS + 100


@pytest.mark.parametrize(
    ("path", "needle"), [("/png", "not a text page"), ("/missing", "HTTP 404")]
)
async def test_http_errors_and_binaries_are_error_results(
    site: str, path: str, needle: str
) -> None:
    text, error = await fetch(f"{site}{path}", allow_private=True)
    assert error and needle in text


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/", "javascript:alert(1)", "gopher://x/"]
)
async def test_other_schemes_are_refused(url: str) -> None:
    text, error = await fetch(url, allow_private=True)
    assert error and "only http and https" in text


async def test_private_addresses_are_refused_by_default(site: str) -> None:
    text, error = await fetch(f"{site}/")
    assert error and "127.0.0.1 is a private or local address" in text
    port = site.rsplit(":", 1)[1]
    text, error = await fetch(f"http://localhost:{port}/")  # a name: checked once resolved
    assert error and "localhost resolves to a private or local address" in text
    for url in ("http://[::1]/", "http://169.254.169.254/latest", "http://10.0.0.1/"):
        text, error = await fetch(url)
        assert error and "private or local" in text, url


async def test_every_redirect_hop_is_checked(site: str) -> None:
    port = site.rsplit(":", 1)[1]
    ok, error = await fetch(f"{site}/redirect?to=/", allowed=only_127_0_0_1)
    assert not error and "Hello" in ok
    text, error = await fetch(
        f"{site}/redirect?to=http://127.0.0.2:{port}/", allowed=only_127_0_0_1
    )
    assert error and "127.0.0.2 is a private or local address" in text
    text, error = await fetch(f"{site}/redirect?to=file:///etc/passwd", allowed=only_127_0_0_1)
    assert error and "only http and https" in text


def test_the_default_policy_is_public_addresses_only() -> None:
    addresses = ("8.8.8.8", "2606:4700::1111", "127.0.0.1", "192.168.1.1", "::ffff:10.0.0.1")
    verdicts = [public_only(ipaddress.ip_address(a)) for a in addresses]
    assert verdicts == [True, True, False, False, False]
