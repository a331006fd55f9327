"""The shared download helper: status codes and sign-in pages become picobot errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from channels.downloads import kind_of, stream_url
from picobot.core.errors import BadRequest, ChannelError, ChannelTimeout, Forbidden
from picobot.core.messages import AttachmentKind


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "file":
            return web.Response(body=b"x" * 200_000, content_type="application/pdf")
        if name == "signin":
            return web.Response(text="<html>Sign in</html>", content_type="text/html")
        return web.Response(status=int(name))

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def read(url: str, **kw: object) -> bytes:
    async with aiohttp.ClientSession() as session:
        return b"".join([c async for c in stream_url(session, url, "test", **kw)])  # type: ignore[arg-type]


async def test_streams_the_body(server: str) -> None:
    assert await read(server + "/file") == b"x" * 200_000


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/signin", Forbidden),
        ("/403", Forbidden),
        ("/401", Forbidden),
        ("/404", BadRequest),
        ("/503", ChannelTimeout),
    ],
)
async def test_refusals_are_translated(server: str, path: str, error: type[ChannelError]) -> None:
    with pytest.raises(error) as info:
        await read(server + path)
    assert server not in str(info.value)  # URLs may hold tokens: never in an error


async def test_html_is_fine_when_expected(server: str) -> None:
    assert b"Sign in" in await read(server + "/signin", expect_html=True)


async def test_unreachable_is_transient() -> None:
    with pytest.raises(ChannelTimeout):
        await read("http://127.0.0.1:9/none")


def test_kind_of() -> None:
    assert kind_of("image/png") is AttachmentKind.IMAGE
    assert kind_of("audio/webm", voice=True) is AttachmentKind.VOICE
    assert kind_of("audio/mpeg") is AttachmentKind.AUDIO
    assert kind_of("video/mp4") is AttachmentKind.VIDEO
    assert kind_of("application/zip") is AttachmentKind.FILE
