"""Only what the enabled channels and the configured model need is imported at startup (and the
media libraries only when a file comes; pydantic only with the openai model or MCP servers);
frozenlist's C++ build, not at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from picobot import cli
from tests.ops.helpers import ROOT, Daemon, NotifySocket, write_config

# The platform SDKs, the openai SDK (provider demo here), the media libraries, and the Markdown
# parsers (the web chat shows Markdown as it is; pyromark is imported on the first rendering for
# another platform, markdown_it by rich for the terminal chat), redis (cluster mode only) and
# cryptography (which redis would bring), tenacity (a failed channel start or the openai model
# retries with it), html2text (the first fetched HTML page) and pydantic (the openai SDK and
# mcp use it; the config is read with attrs and cattrs).
HEAVY = (
    *("telegram", "httpx", "discord", "slack_bolt", "slack_sdk", "openai"),
    *("PIL", "pypdf", "puremagic", "pyromark", "redis", "cryptography"),
    *("tenacity", "html2text", "markdown_it", "pydantic", "pydantic_core"),
)

SCRIPT = f"""
import asyncio, sys
HEAVY = {HEAVY!r}
from picobot.config import load_config
from picobot.runtime.main import run

def on_ready(daemon):
    print("CHANNELS", sorted(daemon.channels), flush=True)
    heavy = [m for m in HEAVY if m in sys.modules]
    print("HEAVY", heavy, flush=True)
    daemon.stopped.set()

sys.exit(asyncio.run(run(load_config(sys.argv[1]), on_ready=on_ready)))
"""


def test_web_only_imports_no_platform_sdk(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", web={"enabled": True})
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "CHANNELS ['web']" in result.stdout, result.stderr
    assert "HEAVY []" in result.stdout


def maps_at_ready(tmp_path: Path) -> str:
    """The files a web-chat-only `picobot run` has mapped once READY (/proc/PID/maps)."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", web={"enabled": True})
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon(config, {"NOTIFY_SOCKET": notify.path})
    try:
        notify.expect("READY=1")
        maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    finally:
        code = daemon.stop()
        notify.close()
    assert code == 0, "\n".join(daemon.lines)
    return maps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_run_maps_no_cpp_runtime_for_frozenlist(tmp_path: Path) -> None:
    """`picobot run` has frozenlist (aiohttp's signal lists) in pure Python: its C++ build
    would map libstdc++ (+1 MB RSS)."""
    maps = maps_at_ready(tmp_path)
    assert "/frozenlist/" not in maps
    assert "libstdc++" not in maps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_run_is_on_uvloop(tmp_path: Path) -> None:
    """`picobot run` runs its event loop on uvloop (installed with picobot on Linux)."""
    assert "/uvloop/loop." in maps_at_ready(tmp_path)


def test_lean_env_keeps_what_the_user_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in cli.LEAN_ENV:
        monkeypatch.setenv(name, "")  # "" switches frozenlist's C extension back on
    cli.lean_env()
    assert all(os.environ[name] == "" for name in cli.LEAN_ENV)
    for name in cli.LEAN_ENV:
        monkeypatch.delenv(name)
    cli.lean_env()
    assert all(os.environ[name] == value for name, value in cli.LEAN_ENV.items())
