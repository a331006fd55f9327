"""`picobot chat` as a user runs it: in a pseudo-terminal (pexpect) and with piped input.

Every wait is for output (with a timeout); nothing sleeps.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pexpect
import yaml

TIMEOUT = 20
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def config(tmp_path: Path, **more: object) -> Path:
    path = tmp_path / "config.yaml"
    data = {"data_dir": str(tmp_path / "data"), "channels": {"web": {"enabled": False}}, **more}
    path.write_text(yaml.safe_dump(data))
    return path


def env(delay: str = "0") -> dict[str, str]:
    return {
        **os.environ,
        "PICOBOT_DEMO_DELAY": delay,
        "TERM": "xterm-256color",
        "NO_COLOR": "1",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # a pty answers no cursor-position requests
    }


def spawn(tmp_path: Path, delay: str = "0") -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "picobot", "chat", "--config", str(config(tmp_path))],
        env=env(delay),
        cwd=str(tmp_path),
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=TIMEOUT,
    )


def chat(tmp_path: Path, text: str, *args: str, **more: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "picobot", "chat", "--config", str(config(tmp_path, **more)), *args],
        input=text,
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
        timeout=TIMEOUT,
    )


def test_line_editing_history_markdown_and_a_clean_ctrl_c_and_ctrl_d(tmp_path: Path) -> None:
    child = spawn(tmp_path, delay="0.05")
    transcript = []
    try:
        child.expect("you>")
        # Arrow keys edit the line: "wrld" + ←←← + "o" is "world".
        child.send("wrld\x1b[D\x1b[D\x1b[Do\r")
        child.expect("You said")
        child.expect("you>")
        transcript.append(child.before)
        # Ctrl-C mid-reply stops the reply, and the prompt comes back.
        child.send("long\r")
        child.expect("Part 1")
        child.sendintr()
        child.expect(r"\(stopped\)")
        child.expect("you>")
        transcript.append(child.before)
        # ↑ brings back the last line.
        child.send("\x1b[A")
        child.expect("long")
        child.send("\x15")  # Ctrl-U clears it again
        child.sendeof()  # Ctrl-D at an empty prompt: quit
        child.expect(pexpect.EOF)
        transcript.append(child.before)
    finally:
        child.close()
    assert child.exitstatus == 0
    text = ANSI.sub("", "".join(transcript))
    assert "▌ world" in text  # the blockquote, rendered; the edited line was sent
    assert "^[[D" not in text and "Traceback" not in text
    # Markdown rendered: the final reply shows bold text, not asterisks (a live frame may,
    # while the closing ** has not arrived yet).
    final = text.rindex("what time is it?")
    assert text[final - 2 : final] != "**"
    assert transcript[-1].endswith("\r\n")  # the shell prompt starts on a new line


def test_ctrl_c_at_the_prompt_exits_at_once(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    try:
        child.expect("you>")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in (child.before or "")


def test_piped_runs_start_fresh_unless_a_session_is_named(tmp_path: Path) -> None:
    runs = [chat(tmp_path, "hello\n/status\n") for _ in range(2)]
    named = [chat(tmp_path, "hello\n/status\n", "--session", "work") for _ in range(2)]

    assert all(r.returncode == 0 for r in runs + named), [r.stderr for r in runs + named]
    assert all("Conversation: 2 messages" in r.stdout for r in runs)
    assert "Conversation: 2 messages" in named[0].stdout
    assert "Conversation: 4 messages" in named[1].stdout
    assert "> hello" in runs[0].stdout  # plain Markdown when piped


def test_a_model_that_cannot_be_reached_fails_the_run_and_is_named(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    llm = {"provider": "openai", "base_url": url, "api_key": "sk-test", "max_retries": 0}

    result = chat(tmp_path, "hello\n", llm=llm)

    assert result.returncode == 1
    assert "Could not reach the language model" in result.stdout
    assert url in result.stderr and "Lost the connection" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
