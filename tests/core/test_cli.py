"""The command line, run as a user would: in a subprocess."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def picobot(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "picobot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    result = picobot("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("picobot ")


def test_help_does_not_import_platform_libraries() -> None:
    code = (
        "import sys; from picobot.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('telegram', 'discord', 'slack_bolt', 'openai', 'aiohttp') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_check_ok_prints_a_summary(tmp_path: Path) -> None:
    result = picobot("check", "--config", str(ROOT / "config.yaml"))
    assert result.returncode == 0
    assert "channels: web" in result.stdout


def test_check_bad_config_exits_2_naming_the_key_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("channels:\n  telegram:\n    token: 123456:TOPSECRETTOKEN\n    colour: red\n")
    result = picobot("check", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0  # one line
    assert "channels.telegram.colour: unknown key" in result.stderr
    assert "TOPSECRET" not in result.stderr + result.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_refuse_an_unknown_tool_alike(tmp_path: Path, command: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"data_dir: {tmp_path}\nagent:\n  tools: [time, telepathy]\n")
    result = picobot(command, "--config", str(path))
    assert result.returncode == 2
    assert "agent.tools: unknown tool 'telepathy' (available: time, message, schedule, fetch)" in (
        result.stderr
    )


def test_chat_answers_piped_lines_and_exits_at_end_of_input() -> None:
    result = picobot("chat", stdin="hello there\nsecond line\n", env={"PICOBOT_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert "hello there" in result.stdout and "second line" in result.stdout
    assert "demo model" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nhttp: {{port: 0}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "picobot", "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # wait for readiness, as systemd would
        lines.append(line)
        if " ready:" in line or "Traceback" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped" in rest


def test_status_says_when_the_shared_outbox_cannot_be_read() -> None:
    from picobot.cli import _format_status

    error = "cluster outbox: Redis unreachable (Connection refused)"
    out = _format_status({"outbox": {"error": error}})
    assert f"outbox: {error}" in out and "dead letters" not in out
    out = _format_status({"outbox": {"pending": 2, "dead": 1, "dead_letters": []}})
    assert "outbox: 2 pending, 1 dead letters" in out
