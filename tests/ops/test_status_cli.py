"""`picobot status` asks the running daemon over its local HTTP server."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from tests.ops.helpers import Daemon, NotifySocket, picobot, telegram, write_config


def config_for_port(path: Path, port: int, **extra: object) -> Path:
    path.write_text(yaml.safe_dump({"http": {"host": "127.0.0.1", "port": port}, **extra}))
    return path


def test_status_of_a_running_daemon(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", telegram=telegram())
    daemon = Daemon(config, {"NOTIFY_SOCKET": notify.path})
    try:
        notify.expect("READY=1")
        # The same host and port the daemon bound (it asked for port 0).
        client = config_for_port(tmp_path / "client.yaml", daemon.port)
        result = picobot("status", "--config", str(client))
    finally:
        assert daemon.stop() == 0
        notify.close()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "telegram: failed" in out  # the channel's state (its platform is unreachable here)
    assert "telegram intake: allowed everyone, 10/min per sender" in out
    assert "lanes: 0, queued: 0" in out
    assert "bus inbound: 0 queued" in out
    assert "uptime: 0h00m" in out
    rss = float(out.split("memory: ")[1].split(" MB")[0])
    assert 5 < rss < 500
    assert "outbox: 0 pending, 0 dead letters" in out
    assert "media: 0 received, 0 sent; 0 files stored (0.0 MB)" in out


def test_status_with_no_daemon_exits_1(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = config_for_port(tmp_path / "client.yaml", port)
    result = picobot("status", "--config", str(client))
    assert result.returncode == 1
    assert f"no daemon answering at http://127.0.0.1:{port}/api/status" in result.stderr
    assert result.stdout == ""


def test_status_needs_only_the_address_not_the_channels_secrets(tmp_path: Path) -> None:
    """The service's config names every secret as ${VAR}; a shell without them can ask."""
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", telegram=telegram())
    daemon = Daemon(config, {"NOTIFY_SOCKET": notify.path})
    try:
        notify.expect("READY=1")
        client = config_for_port(
            tmp_path / "client.yaml",
            daemon.port,
            channels={
                "slack": {"enabled": True, "bot_token": "${PICOBOT_TEST_UNSET_SLACK}"},
                "web": {"token": "${PICOBOT_TEST_UNSET_WEB}"},
            },
        )
        result = picobot("status", "--config", str(client))
    finally:
        assert daemon.stop() == 0
        notify.close()
    assert result.returncode == 0, result.stderr
    assert "telegram: failed" in result.stdout


def test_status_sends_the_web_token(tmp_path: Path) -> None:
    """A stand-in daemon that answers only with the right bearer token."""
    import http.server
    import json
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"uptime": 3725, "channels": {"web": {"state": "connected"}}})
            self.send_response(200 if seen[-1] == "Bearer s3cret-web-token" else 401)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = config_for_port(
            tmp_path / "c.yaml",
            server.server_address[1],
            channels={"web": {"token": "s3cret-web-token"}},
        )
        result = picobot("status", "--config", str(client))
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["Bearer s3cret-web-token"]
    assert result.returncode == 0, result.stderr
    assert "uptime: 1h02m05s" in result.stdout
    assert "web: connected" in result.stdout
