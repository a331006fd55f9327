"""systemd/picobot.service: `systemd-analyze verify` accepts it, and it says what we rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.helpers import ROOT

UNIT = ROOT / "systemd" / "picobot.service"
EXEC = "/opt/picobot/.venv/bin/picobot"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (`make test` installs Debian's systemd package)",
)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: stand one in for the venv's.
    binary = tmp_path / "picobot"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / "picobot.service"
    text = UNIT.read_text()
    assert EXEC in text
    unit.write_text(text.replace(EXEC, str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys or bad values are only warnings (exit 0): none may be printed about our unit.
    assert "picobot.service" not in result.stderr, result.stderr


def test_the_unit_declares_what_picobot_relies_on() -> None:
    d = directives()
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == [f"{EXEC} run --config /etc/picobot/config.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["WatchdogSec"] == ["30"]
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["2"]  # startup errors: restarting cannot help
    # Above the 1024 default: picobot caps its HTTP connections below this limit.
    assert int(d["LimitNOFILE"][0]) >= 4096
    assert d["EnvironmentFile"] == ["-/etc/picobot/env"]
    assert d["StateDirectory"] == ["picobot"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert d["CapabilityBoundingSet"] == [""]
    for key in (
        "DynamicUser",
        "ProtectHome",
        "PrivateTmp",
        "NoNewPrivileges",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "ProtectKernelTunables",
    ):
        assert d[key] == ["yes"], key
    assert d["ProtectSystem"] == ["strict"]
    assert "@system-service" in d["SystemCallFilter"]
