"""SIGHUP reloads config.yaml: changed channels restart, policies update, bad files are refused."""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.ops.helpers import TG_TOKEN, Daemon, NotifySocket, telegram, write_config


def api_status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as response:
        return json.load(response)


@pytest.fixture
def running(tmp_path: Path):
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", telegram=telegram())
    daemon = Daemon(config, {"NOTIFY_SOCKET": notify.path})
    notify.expect("READY=1")
    yield daemon, config, notify
    code = daemon.stop()
    notify.close()
    assert code == 0, "\n".join(daemon.lines)


def test_policy_change_applies_without_restarting_the_channel(running) -> None:
    daemon, config, notify = running
    assert api_status(daemon.port)["intake"]["telegram"]["inbound_rate"] == 10
    write_config(config, config.parent / "data", telegram=telegram(inbound_rate=3))
    daemon.signal(signal.SIGHUP)
    notify.expect("RELOADING=1")
    assert "STATUS=ready: telegram=failed" in notify.expect("READY=1").split("\n")
    line = daemon.wait_for(r"reloaded .*config\.yaml: ").string
    assert "telegram: intake policy updated" in line
    assert api_status(daemon.port)["intake"]["telegram"] == {
        "allowed": "everyone",
        "inbound_rate": 3,
    }
    assert not any("channel telegram restarted" in x for x in daemon.lines)


def test_channel_config_change_restarts_that_channel(running) -> None:
    daemon, config, notify = running
    data = config.parent / "data"
    write_config(config, data, telegram=telegram(base_url="http://127.0.0.1:7/bot"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"channel telegram restarted")
    assert "telegram: restarted" in daemon.wait_for(r"reloaded ").string
    notify.expect("READY=1")


def test_disabling_a_channel_stops_it_and_startup_sections_need_a_restart(running) -> None:
    daemon, config, notify = running
    text = config.read_text().replace("enabled: true", "enabled: false")
    config.write_text(text + "llm:\n  model: other-model\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"reload: llm changed: restart required")
    daemon.wait_for(r"channel telegram stopped")
    notify.expect("READY=1")
    assert api_status(daemon.port)["channels"] == {}


@pytest.mark.parametrize(
    ("broken", "key"),
    [
        ({"inbound_rate": 0}, "channels.telegram.inbound_rate"),
        (
            {"colour": "red", "token": "987654321:NEWSECRETNEWSECRETNEWSECRETNEWSECRET"},
            "channels.telegram.colour: unknown key",
        ),
    ],
)
def test_a_broken_config_is_refused_and_the_old_one_stays(running, broken, key) -> None:
    daemon, config, notify = running
    write_config(config, config.parent / "data", telegram=telegram(**broken))
    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for(r"reload rejected").string
    assert key in line
    assert "NEWSECRET" not in line and TG_TOKEN not in line
    notify.expect("READY=1")  # systemd must not be left thinking we are still reloading
    status = api_status(daemon.port)
    assert status["intake"]["telegram"]["inbound_rate"] == 10
    assert list(status["channels"]) == ["telegram"]


def test_yaml_syntax_error_is_refused(running) -> None:
    daemon, config, notify = running
    config.write_text("channels: [unclosed\n")
    daemon.signal(signal.SIGHUP)
    assert "is not valid YAML" in daemon.wait_for(r"reload rejected").string
    notify.expect("READY=1")
    assert daemon.proc.poll() is None


def test_sighup_restarts_an_mcp_server_whose_config_changed(running) -> None:
    daemon, config, _ = running
    server = str(Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py")
    data = yaml.safe_load(config.read_text())
    data["mcp"] = {"servers": {"files": {"command": [sys.executable, server]}}}
    config.write_text(yaml.safe_dump(data))
    daemon.signal(signal.SIGHUP)
    assert "mcp files: restarted" in daemon.wait_for(r"reloaded ").string
    daemon.wait_for(r"mcp server files: connected, 8 tools")
    data["mcp"]["servers"]["files"]["tools"] = ["echo"]
    config.write_text(yaml.safe_dump(data))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"mcp server files: connected, 1 tools")
    assert api_status(daemon.port)["mcp"]["files"]["tools"] == ["files__echo"]
