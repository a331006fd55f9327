"""The daemon's footprint with only the web chat enabled, measured from outside the process.

- time to READY: from spawning `python -m picobot run` to its sd_notify READY=1 (a fake
  $NOTIFY_SOCKET stands in for systemd);
- RSS after READY (/proc/PID/status VmRSS);
- idle CPU: utime + stime from /proc/PID/stat over an idle window (IDLE_WINDOW s, not 60 s);
- `picobot --help` wall time (the console script; median of HELP_RUNS).

Targets (issue #10): RSS ≤ 50 MB, idle CPU ≤ 0.5 %, --help ≤ 0.3 s, READY ≤ 2 s. Linux only.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDLE_WINDOW = 10.0
HELP_RUNS = 5
TARGETS = {"rss": 50.0, "cpu": 0.5, "help": 0.3, "ready": 2.0}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def help_time() -> float:
    script = Path(sys.executable).with_name("picobot")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "picobot"]
    times = []
    for _ in range(HELP_RUNS):
        start = time.perf_counter()
        subprocess.run([*cmd, "--help"], check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def daemon(idle_window: float = IDLE_WINDOW) -> tuple[float, float, float]:
    """(seconds to READY, RSS MB after READY, idle CPU % over `idle_window`)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "config.yaml")
        config.write_text(f"data_dir: {tmp}/data\nhttp:\n  port: 0\n")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(f"{tmp}/notify.sock")
        notify.settimeout(30)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "picobot", "run", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "NOTIFY_SOCKET": f"{tmp}/notify.sock"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while b"READY=1" not in notify.recv(4096).split(b"\n"):
                pass
            ready = time.perf_counter() - start
            rss = _rss_mb(proc.pid)
            cpu_before, t_before = _cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(idle_window)  # the measurement itself: the daemon is left alone
            cpu = _cpu_seconds(proc.pid) - cpu_before
            cpu_percent = 100 * cpu / (time.perf_counter() - t_before)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            notify.close()
    return ready, rss, cpu_percent


def main(idle_window: float = IDLE_WINDOW) -> str:
    ready, rss, cpu = daemon(idle_window)
    help_s = help_time()

    def row(name: str, value: str, target: str, ok: bool) -> str:
        return f"| {name} | {value} | {target} | {'✓' if ok else '✗'} |"

    return "\n".join(
        [
            "## Footprint (web chat only)",
            "",
            "| measure | result | target | |",
            "|---|---|---|---|",
            row("RSS after READY", f"{rss:.1f} MB", "≤ 50 MB", rss <= TARGETS["rss"]),
            row(
                f"idle CPU over {idle_window:g} s",
                f"{cpu:.2f} %",
                "≤ 0.5 %",
                cpu <= TARGETS["cpu"],
            ),
            row("`picobot --help`", f"{help_s:.3f} s", "≤ 0.3 s", help_s <= TARGETS["help"]),
            row("start to READY=1", f"{ready:.2f} s", "≤ 2 s", ready <= TARGETS["ready"]),
            "",
        ]
    )


if __name__ == "__main__":
    print(main(float(sys.argv[1]) if len(sys.argv) > 1 else IDLE_WINDOW))
