"""The page in a real browser (Debian's chromium, headless, driven by Playwright) against a
real daemon on the demo model: type, watch the reply stream in, reload, see the history;
Markdown, conversations, a daemon restart, stopping, and no console errors."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from picobot.core.messages import OutboundMessage
from tests.media import samples
from tests.webui.conftest import StartDaemon

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not found (`make test` installs it: apt-get install chromium)",
)

# Records every distinct text the reply bubble shows, as the DOM changes.
RECORD = """() => {
  window.__seen = [];
  new MutationObserver(() => {
    const body = document.querySelector('.msg.assistant .body');
    const text = body ? body.textContent : null;
    if (text && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
  }).observe(document.getElementById('messages'),
             {childList: true, subtree: true, characterData: true});
}"""


async def test_chat_streams_renders_safely_and_keeps_history(start_daemon: StartDaemon) -> None:
    typed = "hello **browser** <b>not bold</b>"
    async with start_daemon(delay=0.02) as d, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(d.base + "/")
            await page.evaluate(RECORD)
            await page.fill("#input", typed)
            await page.press("#input", "Enter")
            done = await page.wait_for_selector(".msg.assistant[data-done]", timeout=WAIT_MS)
            assert done is not None
            final = await done.eval_on_selector(".body", "e => e.textContent")
            seen: list[str] = await page.evaluate("window.__seen")

            # Streamed: the bubble showed at least two growing partial texts before the end.
            partial = [t for t in seen if t != final]
            assert len(partial) >= 2, seen
            assert all(len(a) < len(b) for a, b in itertools.pairwise(partial))
            assert seen[-1] == final and "You said" in final
            # Markdown rendered, HTML escaped: **browser** is bold, <b> is shown as text.
            assert await done.eval_on_selector("blockquote strong", "e => e.textContent") == (
                "browser"
            )
            assert await done.query_selector("b") is None
            assert "<b>not bold</b>" in final
            assert await page.is_disabled("#stop")  # nothing running any more

            # Reload: the session id is in localStorage; the history comes back, once.
            await page.reload()
            await page.wait_for_selector(".msg.assistant[data-done]", timeout=WAIT_MS)
            users = await page.eval_on_selector_all(".msg.user", "es => es.map(e => e.textContent)")
            bots = await page.eval_on_selector_all(
                ".msg.assistant .body", "es => es.map(e => e.textContent)"
            )
            assert users == [typed]
            assert bots == [final]
        finally:
            await browser.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class Console:
    """Console errors and uncaught exceptions of a page. Failed requests while the daemon is
    down are expected (Chromium logs each as "Failed to load resource")."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning") and "Failed to load resource" not in msg.text:
            self.errors.append(msg.text)


async def texts(page: Page, selector: str) -> list[str]:
    return await page.eval_on_selector_all(selector, "es => es.map(e => e.textContent.trim())")


async def answered(page: Page, count: int) -> None:
    await page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant[data-done]').length >= n",
        arg=count,
        timeout=WAIT_MS,
    )


async def test_markdown_conversations_restart_and_history(start_daemon: StartDaemon) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        console = Console(page)
        async with start_daemon(delay=0.005) as d:
            base, port = d.base, d.daemon.port
            await page.goto(base + "/")
            await page.wait_for_selector("#model:has-text('demo model')", timeout=WAIT_MS)
            assert await page.get_attribute("link[rel=icon]", "href") == "/static/favicon.svg"
            assert await page.get_attribute("label[for=input]", "class") == "visually-hidden"

            # A table is a table, headings are headings, code is highlighted and copyable.
            await page.fill("#input", "show me markdown")
            await page.press("#input", "Enter")
            await answered(page, 1)
            bubble = page.locator(".msg.assistant").first
            assert await bubble.locator("table th").count() == 3
            assert await bubble.locator("table tbody tr").count() == 4
            assert await bubble.locator("h2").count() == 1
            assert await bubble.locator("ol > li").count() == 3
            assert await bubble.locator("pre code.hljs .hljs-keyword").count() >= 1
            assert await bubble.locator("pre button.copy").count() == 1
            await page.wait_for_selector("#conversations li", timeout=WAIT_MS)
            assert await texts(page, "#conversations .open") == ["show me markdown"]

        # The daemon is gone: sending keeps the text in the box and shows "reconnecting…".
        await page.fill("#input", "are you still there?")
        await page.press("#input", "Enter")
        await page.wait_for_selector("body.offline", timeout=WAIT_MS)
        assert await page.input_value("#input") == "are you still there?"
        assert "Not sent" in await page.text_content("#status") or ""
        assert await page.text_content("#connection") == "reconnecting…"
        assert await texts(page, ".msg.user") == ["show me markdown"]

        # Back on the same port, same data: the page reconnects by itself; the text is sent.
        async with start_daemon(delay=0.005, port=port) as d:
            await page.wait_for_selector("body:not(.offline)", timeout=WAIT_MS)
            assert await page.input_value("#input") == "are you still there?"
            await page.press("#input", "Enter")
            await answered(page, 2)
            assert await page.input_value("#input") == ""

            # A tool call and a command reply: shown now, and after a reload.
            await page.fill("#input", "what time is it?")
            await page.press("#input", "Enter")
            await answered(page, 3)
            await page.fill("#input", "/help")
            await page.press("#input", "Enter")
            await answered(page, 4)

            # Rename the conversation in the list.
            await page.click("#conversations li .rename")
            await page.fill("#conversations li input", "Markdown demo")
            await page.press("#conversations li input", "Enter")
            await page.wait_for_selector(
                "#conversations .open:has-text('Markdown demo')", timeout=WAIT_MS
            )

            await page.reload()
            await answered(page, 4)
            await page.wait_for_selector("#conversations li", timeout=WAIT_MS)
            assert await texts(page, "#conversations .open") == ["Markdown demo"]
            assert await texts(page, ".msg.user") == [
                "show me markdown",
                "are you still there?",
                "what time is it?",
                "/help",
            ]
            assert await page.locator(".msg.user.command").count() == 1
            assert await page.locator(".msg.assistant table").count() == 1
            assert await texts(page, ".tool summary") == ["✓ time"]
            assert "Commands:" in (await texts(page, ".msg.assistant .body"))[-1]

            # A second conversation, then delete it: the list and the page follow.
            await page.click("#new-chat")
            await page.fill("#input", "a second one")
            await page.press("#input", "Enter")
            await answered(page, 1)
            await page.wait_for_selector("#conversations li:nth-child(2)", timeout=WAIT_MS)
            assert await texts(page, "#conversations .open") == ["a second one", "Markdown demo"]
            page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.click("#conversations li:first-child .delete")
            await page.wait_for_function(
                "() => document.querySelectorAll('#conversations li').length === 1",
                timeout=WAIT_MS,
            )
            assert await page.locator(".msg").count() == 0
            async with d.http.get(d.base + "/api/sessions") as r:
                assert [s["title"] for s in await r.json()] == ["Markdown demo"]
    assert console.errors == []


async def test_escape_stops_a_reply_with_one_marker(start_daemon: StartDaemon) -> None:
    async with chromium() as browser, start_daemon(delay=0.05) as d:
        page = await browser.new_page()
        console = Console(page)
        await page.goto(d.base + "/")
        await page.fill("#input", "something long please")
        await page.press("#input", "Enter")
        await page.wait_for_selector("#stop:not([disabled])", timeout=WAIT_MS)
        await page.keyboard.press("Escape")
        await answered(page, 1)
        assert await texts(page, ".msg.assistant .stopped") == ["Stopped"]
        assert await page.locator(".msg.assistant").count() == 1  # no "Stopped." bubble
        assert await page.is_disabled("#stop")
    assert console.errors == []


async def test_a_reply_cut_by_a_restart_continues_when_the_daemon_is_back(
    start_daemon: StartDaemon,
) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        console = Console(page)
        # drain_timeout 0: stopping cuts the turn; the next start runs it again.
        async with start_daemon(delay=0.05, dispatch={"drain_timeout": 0}) as d:
            port = d.daemon.port
            await page.goto(d.base + "/")
            await page.fill("#input", "something long please")
            await page.press("#input", "Enter")
            await page.wait_for_selector("#stop:not([disabled])", timeout=WAIT_MS)
        await page.wait_for_selector(".msg.assistant .stopped", timeout=WAIT_MS)
        assert await page.is_visible("body.offline") or await page.is_enabled("#stop")
        async with start_daemon(delay=0.001, port=port):
            await answered(page, 1)
            final = (await texts(page, ".msg.assistant .body"))[-1]
            assert "That was the end of the long reply" in final
            assert await page.locator(".msg.assistant").count() == 1
            assert await page.locator(".stopped, .problem").count() == 0
            assert await page.is_disabled("#stop")
    assert console.errors == []


CONTRAST = """() => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(document.getElementById('send'));
  const [a, b] = [lum(style.color), lum(style.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""

PLACEHOLDER_FITS = """() => {
  const input = document.getElementById('input');
  const style = getComputedStyle(input);
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = style.font;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return ctx.measureText(input.placeholder).width <= room;
}"""


async def test_dark_mobile_page_is_readable_and_keyboard_usable(start_daemon: StartDaemon) -> None:
    async with chromium() as browser, start_daemon() as d:
        page = await browser.new_page(color_scheme="dark", viewport={"width": 390, "height": 844})
        await page.goto(d.base + "/")
        assert await page.evaluate(CONTRAST) >= 4.5
        assert await page.evaluate(PLACEHOLDER_FITS)
        assert await page.is_hidden("#sidebar") and await page.is_visible("#menu")
        await page.click("#menu")
        assert await page.is_visible("#sidebar")
        assert await page.get_attribute("#menu", "aria-expanded") == "true"

        # Keyboard only: type, Tab to Send, press it.
        await page.focus("#input")
        await page.keyboard.type("hello by keyboard")
        await page.keyboard.press("Tab")
        assert await page.evaluate("() => document.activeElement.id") == "send"
        await page.keyboard.press("Enter")
        await answered(page, 1)
        assert await texts(page, ".msg.user") == ["hello by keyboard"]


async def test_attach_an_image_and_see_it_after_a_reload(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    picture = tmp_path / "sunset.png"
    picture.write_bytes(samples.png(200, 100, "orange"))
    async with chromium() as browser, start_daemon(web={"token": "tok-0123456789abcdef"}) as d:
        page = await browser.new_page()
        console = Console(page)
        await page.goto(d.base + "/#token=tok-0123456789abcdef")
        await page.set_input_files("#file", str(picture))
        assert "sunset.png" in await page.text_content("#attached") or ""
        await page.fill("#input", "what colour?")
        await page.press("#input", "Enter")
        await answered(page, 1)
        reply = (await texts(page, ".msg.assistant .body"))[-1]
        assert "sunset.png" in reply and "200×100 px" in reply
        assert await page.text_content("#attached") == ""
        shown = await page.wait_for_selector(".msg.user .attachment img", timeout=WAIT_MS)
        assert shown is not None
        await page.wait_for_selector("#conversations li", timeout=WAIT_MS)

        await page.reload()
        img = await page.wait_for_selector(".msg.user .attachment img", timeout=WAIT_MS)
        assert img is not None
        src = await img.get_attribute("src") or ""
        assert src.startswith("/api/media/") and "token=tok-0123456789abcdef" in src
        # The browser loaded it through the token-protected route.
        await page.wait_for_function(
            "() => { const i = document.querySelector('.msg.user .attachment img');"
            " return i && i.complete && i.naturalWidth === 200; }",
            timeout=WAIT_MS,
        )
        users = await texts(page, ".msg.user")  # the text as the model got it: file, then words
        assert len(users) == 1 and users[0].endswith("what colour?")
        assert await page.locator("#conversations li").count() == 1
    assert console.errors == []


DROP_FILE = """async (name) => {
  const data = new DataTransfer();
  data.items.add(new File(["a,b\\n1,2\\n"], name, { type: "text/csv" }));
  for (const type of ["dragover", "drop"]) {
    document.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true }));
  }
}"""


async def test_a_dropped_file_is_sent_and_described(start_daemon: StartDaemon) -> None:
    async with chromium() as browser, start_daemon() as d:
        page = await browser.new_page()
        console = Console(page)
        await page.goto(d.base + "/")
        await page.evaluate(DROP_FILE, "table.csv")
        assert "table.csv" in await page.text_content("#attached") or ""
        await page.press("#input", "Enter")  # a file alone is a message
        await answered(page, 1)
        reply = (await texts(page, ".msg.assistant .body"))[-1]
        assert "file: table.csv (file, text/csv" in reply
        link = page.locator(".msg.user .attachment a")
        assert await link.text_content() == "📎 table.csv"
        assert (await link.get_attribute("href") or "").startswith("/api/media/")
    assert console.errors == []


async def test_a_reminder_shows_while_no_reply_streams_and_after_a_reload(
    start_daemon: StartDaemon,
) -> None:
    async with chromium() as browser, start_daemon() as d:
        page = await browser.new_page()
        console = Console(page)
        await page.goto(d.base + "/")
        await page.fill("#input", "hello")
        # The stream's headers come once the server subscribed it (the page opens it at once).
        async with page.expect_response(
            lambda r: "/api/sessions/" in r.url and r.url.endswith("/events")
        ) as stream:
            await page.press("#input", "Enter")
        assert (await stream.value).status == 200
        await answered(page, 1)
        session = await page.evaluate("localStorage.getItem('picobot.session')")
        assert d.daemon.channels["web"].broker.watched("session:" + session)
        await d.daemon.outbound.deliver(OutboundMessage("web", session, "⏰ tea time"))
        await page.wait_for_selector(".msg.note:has-text('⏰ tea time')", timeout=WAIT_MS)
        await page.reload()
        await page.wait_for_selector(".msg.assistant:has-text('⏰ tea time')", timeout=WAIT_MS)
        assert await page.locator(":text('⏰ tea time')").count() == 1  # once, from history
    assert console.errors == []
