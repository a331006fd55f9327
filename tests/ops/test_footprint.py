"""Only the enabled channels' libraries are imported (and the media libraries only when a file
comes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.ops.helpers import ROOT, write_config

SCRIPT = """
import asyncio, sys
from picobot.config import load_config
from picobot.runtime.daemon import run

def on_ready(daemon):
    print("CHANNELS", sorted(daemon.channels), flush=True)
    sdks = ("telegram", "discord", "slack_bolt", "slack_sdk", "openai", "PIL", "pypdf", "puremagic")
    heavy = [m for m in sdks if m in sys.modules]
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
