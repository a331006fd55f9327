"""The forced stop's backstop ends a process that something would keep alive."""

from __future__ import annotations

import subprocess
import sys

from tests.ops.helpers import ROOT

HUNG = """
import threading
from picobot.runtime.forced import exit_soon
threading.Thread(target=threading.Event().wait).start()  # a non-daemon thread that never ends
exit_soon(0.1, 7)
"""


def test_exit_soon_ends_a_process_a_thread_would_keep_alive() -> None:
    result = subprocess.run(
        [sys.executable, "-c", HUNG], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 7, result.stderr
