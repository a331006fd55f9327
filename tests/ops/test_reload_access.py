"""A reload never widens access: an empty file, a dropped web token or a changed http section
is refused as a whole, and the running config (with its token) stays."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.ops.helpers import Daemon, NotifySocket, telegram, write_config

TOKEN = "web-token-0123456789"
WEB = {"enabled": True, "token": TOKEN}


def get_status(port: int, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def running(tmp_path: Path):
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", telegram=telegram(), web=WEB)
    daemon = Daemon(config, {"NOTIFY_SOCKET": notify.path})
    notify.expect("READY=1")
    assert get_status(daemon.port, None)[0] == 401
    yield daemon, config, notify
    code = daemon.stop()
    notify.close()
    assert code == 0, "\n".join(daemon.lines)


def still_guarded(daemon: Daemon, notify: NotifySocket) -> dict:
    notify.expect("READY=1")
    assert get_status(daemon.port, None) == (401, {"error": "a valid token is required"})
    code, status = get_status(daemon.port, TOKEN)
    assert code == 200
    assert set(status["channels"]) == {"telegram", "web"}  # nothing was stopped
    return status


def test_an_empty_file_is_refused(running) -> None:
    daemon, config, notify = running
    config.write_text("")
    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for(r"reload rejected").string
    assert f"{config} is empty" in line
    still_guarded(daemon, notify)


def test_a_file_without_the_web_token_is_refused_and_not_half_applied(running) -> None:
    daemon, config, notify = running
    data = config.parent / "data"
    write_config(config, data, telegram=telegram(inbound_rate=3), web={"enabled": True})
    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for(r"reload rejected").string
    assert "channels.web.token: changed: restart required" in line
    status = still_guarded(daemon, notify)
    assert status["intake"]["telegram"]["inbound_rate"] == 10  # the rest was not applied


def test_a_changed_http_section_is_refused(running) -> None:
    daemon, config, notify = running
    data = yaml.safe_load(config.read_text())
    data["http"] = {"host": "0.0.0.0", "port": 0}
    config.write_text(yaml.safe_dump(data))
    daemon.signal(signal.SIGHUP)
    assert "http.host: changed: restart required" in daemon.wait_for(r"reload rejected").string
    still_guarded(daemon, notify)
