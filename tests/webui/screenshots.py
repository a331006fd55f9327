"""Screenshots of the web chat for the docs: `make screenshots` (or
`python -m tests.webui.screenshots docs/`). A real daemon on the demo model, Debian's chromium."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from picobot.agent.demo import DemoLLM
from picobot.config import parse_config
from picobot.runtime.daemon import Daemon
from tests.webui.test_browser import ARGS, CHROMIUM, WAIT_MS

SHOTS = {  # file name -> page options
    "webchat-light.png": {"viewport": {"width": 1200, "height": 760}, "color_scheme": "light"},
    "webchat-dark.png": {"viewport": {"width": 1200, "height": 760}, "color_scheme": "dark"},
    "webchat-mobile.png": {
        "viewport": {"width": 390, "height": 844},
        "color_scheme": "light",
        "device_scale_factor": 2,
        "is_mobile": True,
    },
}
ASK = ["what time is it in Europe/Paris?", "show me markdown"]


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as data:
        config = parse_config({"http": {"port": 0}, "data_dir": data}, env={})
        async with Daemon(config, llm=DemoLLM(delay=0)) as daemon, async_playwright() as pw:
            base = f"http://127.0.0.1:{daemon.port}/"
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                first = await browser.new_page()
                await first.goto(base)
                for n, text in enumerate(ASK, 1):
                    await first.fill("#input", text)
                    await first.press("#input", "Enter")
                    await first.wait_for_function(
                        "n => document.querySelectorAll('.msg.assistant[data-done]').length >= n",
                        arg=n,
                        timeout=WAIT_MS,
                    )
                session = await first.evaluate("localStorage.getItem('picobot.session')")
                await first.close()
                for name, options in SHOTS.items():
                    page = await browser.new_page(**options)  # type: ignore[arg-type]
                    await page.goto(base)
                    await page.evaluate(f"localStorage.setItem('picobot.session', '{session}')")
                    await page.reload()
                    await page.wait_for_selector(".msg.assistant table", timeout=WAIT_MS)
                    await page.wait_for_selector(
                        "#conversations li", state="attached", timeout=WAIT_MS
                    )
                    await page.fill("#input", "")
                    await page.evaluate("document.activeElement.blur()")
                    await page.screenshot(path=out / name)
                    await page.close()
                    print(out / name)
            finally:
                await browser.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
