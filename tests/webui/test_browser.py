"""The page in a real browser (Debian's chromium, headless, driven by Playwright) against a
real daemon on the demo model: type, watch the reply stream in, reload, see the history."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

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
            # Markdown formatted, HTML escaped: **browser** is bold, <b> is shown as text.
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


async def test_attach_an_image_and_see_it_after_a_reload(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    picture = tmp_path / "sunset.png"
    picture.write_bytes(samples.png(200, 100, "orange"))
    async with start_daemon(web={"token": "tok"}) as d, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(d.base + "/#token=tok")
            await page.set_input_files("#file", str(picture))
            assert "sunset.png" in await page.text_content("#attached") or ""
            await page.fill("#input", "what colour?")
            await page.press("#input", "Enter")
            done = await page.wait_for_selector(".msg.assistant[data-done]", timeout=WAIT_MS)
            assert done is not None
            reply = await done.eval_on_selector(".body", "e => e.textContent")
            assert "sunset.png" in reply and "200×100 px" in reply
            assert await page.text_content("#attached") == ""
            shown = await page.wait_for_selector(".msg.user .attachment img", timeout=WAIT_MS)
            assert shown is not None

            await page.reload()
            img = await page.wait_for_selector(".msg.user .attachment img", timeout=WAIT_MS)
            assert img is not None
            src = await img.get_attribute("src") or ""
            assert src.startswith("/api/media/") and "token=tok" in src
            # The browser loaded it through the token-protected route.
            await page.wait_for_function(
                "() => { const i = document.querySelector('.msg.user .attachment img');"
                " return i && i.complete && i.naturalWidth === 200; }",
                timeout=WAIT_MS,
            )
            users = await page.eval_on_selector_all(".msg.user", "es => es.map(e => e.textContent)")
            assert len(users) == 1 and "what colour?" in users[0]
        finally:
            await browser.close()
