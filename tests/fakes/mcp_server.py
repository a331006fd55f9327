"""A small MCP server for the tests, written with the official SDK.

    python -m tests.fakes.mcp_server            stdio (the client starts it as a child)
    python -m tests.fakes.mcp_server --http     streamable HTTP on 127.0.0.1, a free port;
                                                prints "PORT <n>" on stdout when listening

$MCP_TEST_PIDFILE (if set) receives the server's pid, so tests can check it is gone.
$MCP_TEST_TOKEN (if set, HTTP only) is the bearer token every request must carry.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys

from mcp.server.mcpserver import Image, MCPServer
from mcp_types import ImageContent, TextContent

# A 1x1 transparent PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)

server = MCPServer("picobot-test")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    print(f"echo called with {len(text)} characters", file=sys.stderr, flush=True)
    return f"echo: {text}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def pixel() -> list[TextContent | ImageContent]:
    """A caption and a tiny image."""
    return [TextContent(text="a pixel"), Image(data=PIXEL, format="png").to_image_content()]


@server.tool()
async def hang() -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return "unreachable"


@server.tool()
def huge() -> str:
    """A 10 MB result."""
    return "x" * (10 * 1024 * 1024)


@server.tool()
def crash() -> str:
    """Exits the process in the middle of the call."""
    os._exit(3)


@server.tool()
def garbage() -> str:
    """Prints a line that is not JSON-RPC on stdout, then answers."""
    os.write(1, b"this is not json\n")  # fd 1: the SDK keeps sys.stdout for the protocol
    return "fine"


@server.tool()
def fail() -> str:
    """Raises: the result is an error."""
    raise RuntimeError("the tool broke")


def serve_http() -> None:
    import uvicorn
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    app = server.streamable_http_app()
    token = os.environ.get("MCP_TEST_TOKEN")
    if token:

        async def check(request: Request, call_next: object) -> Response:
            if request.headers.get("authorization") != f"Bearer {token}":
                return PlainTextResponse("unauthorized", status_code=401)
            return await call_next(request)  # type: ignore[operator,no-any-return]

        app.add_middleware(BaseHTTPMiddleware, dispatch=check)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, fd=sock.fileno(), log_level="warning", lifespan="on")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    if pidfile := os.environ.get("MCP_TEST_PIDFILE"):
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    if "--http" in sys.argv:
        serve_http()
    else:
        server.run("stdio")
