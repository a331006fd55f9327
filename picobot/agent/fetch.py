"""The `fetch` tool: GET a web page and return it as readable text.

SSRF guard: unless `fetch.allow_private`, every address the connection would use must be
public. Names are checked after DNS resolution (in the connector's resolver, so the address
checked is the address connected to) and redirects are followed by hand, each hop checked
the same way (scheme, literal address, resolved addresses).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from picobot.agent.tools import Tool, ToolContext, ToolError

MAX_BYTES = 2 * 1024 * 1024  # read at most this much of a body
MAX_CHARS = 12_000  # of text returned to the model
TIMEOUT = 20.0  # seconds for the whole fetch, redirects included
MAX_REDIRECTS = 5
USER_AGENT = "picobot-fetch/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]


def public_only(ip: IPAddress) -> bool:
    """True for globally routable addresses: no loopback, private, link-local, reserved..."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def any_address(ip: IPAddress) -> bool:
    return True


class Refused(ToolError):
    """The URL or an address it resolves to is not allowed."""


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops every address the policy refuses."""

    def __init__(self, allowed: AddressPolicy) -> None:
        self.allowed = allowed
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self.allowed(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise Refused(f"{host} resolves to a private or local address")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: URL, allowed: AddressPolicy) -> None:
    """:raises Refused: for a non-http(s) scheme or a literal address the policy refuses."""
    if url.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs can be fetched, not {url.scheme or 'none'!r}")
    if not url.host:
        raise Refused("the URL has no host")
    try:
        literal = ipaddress.ip_address(url.host)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not allowed(literal):
        raise Refused(f"{url.host} is a private or local address")


def to_text(body: bytes, content_type: str, charset: str | None) -> str:
    text = body.decode(charset or "utf-8", errors="replace")
    if "html" in content_type:
        import html2text  # only when a page is fetched: -0.3 MB for daemons that never fetch

        converter = html2text.HTML2Text()
        converter.ignore_images = True
        converter.body_width = 0  # no hard wrapping
        return converter.handle(text).strip()
    return text.strip()


async def fetch_text(url: str, allowed: AddressPolicy = public_only) -> str:
    """GET `url` and return its readable text (HTML converted), capped.

    :raises ToolError: for a refused URL or address, an HTTP error, a non-text body, a timeout.
    """
    current = URL(url.strip())
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    headers = {"User-Agent": USER_AGENT, "Accept": "text/html, text/plain;q=0.9, */*;q=0.5"}
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers
        ) as session:
            for _ in range(MAX_REDIRECTS + 1):
                check_url(current, allowed)
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise ToolError(f"HTTP {response.status} without a Location")
                        current = current.join(URL(location))
                        continue
                    if response.status >= 400:
                        raise ToolError(f"HTTP {response.status} {response.reason or ''}".strip())
                    kind = response.content_type or ""
                    if not (kind.startswith("text/") or kind in _TEXT_TYPES):
                        raise ToolError(f"not a text page ({kind or 'unknown type'})")
                    body = await response.content.read(MAX_BYTES)
                    text = to_text(body, kind, response.charset)
                    break
            else:
                raise ToolError(f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise ToolError(f"no complete answer within {TIMEOUT:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        raise ToolError(f"cannot connect to {current.host}: {exc.os_error}") from None
    except aiohttp.ClientError as exc:
        raise ToolError(f"fetch failed: {type(exc).__name__}: {exc}") from None
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + "\n[page truncated]"
    return text or "(the page has no text)"


_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/xhtml+xml"})


def fetch_tool(allow_private: bool = False, *, allowed: AddressPolicy | None = None) -> Tool:
    """`fetch`: read a web page. `allowed` overrides the address policy (tests)."""
    policy = allowed or (any_address if allow_private else public_only)

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        return await fetch_text(str(args.get("url", "")), policy)

    return Tool(
        "fetch",
        "Fetch a web page (http or https) and return its text.",
        handler,
        {
            "type": "object",
            "properties": {"url": {"type": "string", "description": "The page's URL."}},
            "required": ["url"],
        },
    )
