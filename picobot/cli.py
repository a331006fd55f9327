"""Command line: `picobot run | check | chat | status | --version`.

Reads the environment and the config file once, then hands frozen objects down. Heavy modules
(platform SDKs, aiohttp, openai) are imported inside the commands, so `--help` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from picobot import __version__

if TYPE_CHECKING:
    from picobot.config import Config

EXIT_CONFIG = 2
# frozenlist (the callback lists behind aiohttp's signals) in pure Python: its C++ build maps
# libstdc++ into the process, 1 MB of RSS for lists of a few callbacks (docs/benchmarks.md).
# frozenlist's own switch, read when it is first imported; a value the user set wins.
LEAN_ENV = {"FROZENLIST_NO_EXTENSIONS": "1"}


def lean_env() -> None:
    """Set `LEAN_ENV` where unset; before anything imports aiohttp (`main` does it first)."""
    for name, value in LEAN_ENV.items():
        os.environ.setdefault(name, value)


def _default_config() -> str | None:
    """$PICOBOT_CONFIG, else ./config.yaml if present, else built-in defaults."""
    if env := os.environ.get("PICOBOT_CONFIG"):
        return env
    return "config.yaml" if Path("config.yaml").is_file() else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picobot",
        description="One AI agent on Telegram, Discord, Slack and a built-in web chat.",
    )
    parser.add_argument("--version", action="version", version=f"picobot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_help = "config file (default: $PICOBOT_CONFIG, else ./config.yaml, else defaults)"
    for name, help_text in (
        ("run", "run the daemon in the foreground (logs to stderr)"),
        ("check", "validate the config file and summarise it"),
        ("chat", "chat with the configured agent in this terminal"),
        ("status", "ask the running daemon (over its HTTP server) how it is doing"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", "-c", metavar="PATH", default=None, help=config_help)
        if name == "chat":
            cmd.add_argument(
                "--session",
                "-s",
                metavar="NAME",
                help="the conversation to continue (default: this terminal's own; "
                "with piped input, a fresh one per run)",
            )
    return parser


def _status(config: Config) -> int:
    """`picobot status`: GET /api/status from the daemon; 0 if it answered, 1 if none did."""
    import json
    import urllib.error
    import urllib.request

    # A daemon listening on every address is reachable on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.http.host)
    host = host or config.http.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{config.http.port}/api/status"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if config.channels.web.token:
        token = config.channels.web.token.get_secret_value()
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"picobot: the daemon at {url} answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"picobot: no daemon answering at {url} ({reason})", file=sys.stderr)
        return 1
    print(_format_status(data))
    return 0


def _format_status(data: dict[str, Any]) -> str:
    uptime = int(data.get("uptime", 0))
    rss = data.get("rss_bytes")
    lines = [
        f"uptime: {uptime // 3600}h{uptime % 3600 // 60:02d}m{uptime % 60:02d}s",
        f"memory: {rss / 2**20:.1f} MB RSS" if rss else "memory: unknown",
        "channels:",
    ]
    for name, ch in data.get("channels", {}).items():
        detail = f" ({ch['detail']})" if ch.get("detail") else ""
        lines.append(f"  {name}: {ch['state']}{detail}")
    if not data.get("channels"):
        lines.append("  (none)")
    for name, policy in data.get("intake", {}).items():
        lines.append(
            f"  {name} intake: allowed {policy['allowed']}, {policy['inbound_rate']}/min per sender"
        )
    dispatch = data.get("dispatch", {})
    lines.append(
        f"lanes: {dispatch.get('lanes', 0)}, queued: {dispatch.get('queued', 0)}, "
        f"placeholders: {dispatch.get('placeholders', 0)}"
    )
    for name, topic in data.get("bus", {}).items():
        lines.append(f"bus {name}: {topic.get('size', 0)} queued")
    media = data.get("media") or {}
    if media:
        lines.append(
            f"media: {media.get('received', 0)} received, {media.get('sent', 0)} sent; "
            f"{media.get('files', 0)} files stored ({media.get('bytes', 0) / 1e6:.1f} MB)"
        )
    outbox = data.get("outbox") or {}
    if outbox.get("error"):  # cluster mode with Redis unreachable
        lines.append(f"outbox: {outbox['error']}")
    else:
        lines.append(
            f"outbox: {outbox.get('pending', 0)} pending, {outbox.get('dead', 0)} dead letters"
        )
    for letter in outbox.get("dead_letters", []):
        lines.append(f"  dead: {letter['channel']}:{letter['chat_id']}: {letter['error']}")
    servers = data.get("mcp") or {}
    lines.append("mcp servers:" if servers else "mcp servers: none")
    for name, server in servers.items():
        tools = len(server.get("tools") or [])
        error = f" ({server['error']})" if server.get("error") else ""
        lines.append(f"  {name}: {server.get('state')}, {tools} tools{error}")
    schedule = data.get("schedule")
    if schedule is not None:
        entries = schedule.get("entries")
        lines.append(f"schedule: {'?' if entries is None else entries} entries")
    if cluster := data.get("cluster"):
        lines += _format_cluster(cluster)
    return "\n".join(lines)


def _format_cluster(cluster: dict[str, Any]) -> list[str]:
    """The `cluster` object: this node, Redis, live nodes, lease holders, partition owners."""
    lines = [f"cluster: node {cluster.get('node')}, redis {cluster.get('redis')}"]
    owners: dict[str, list[str]] = {}
    for partition, node in (cluster.get("partitions") or {}).items():
        owners.setdefault(node or "(nobody)", []).append(partition)
    for node, info in (cluster.get("nodes") or {}).items():
        held = ", ".join(owners.get(node, [])) or "none"
        lines.append(f"  node {node} at {info.get('http', '?')}: partitions {held}")
    for lease, holder in (cluster.get("leases") or {}).items():
        if lease == "scheduler":  # not a platform connection: the node firing reminders
            lines.append(f"  reminders fired by {holder or 'nobody'} (lease scheduler)")
        else:
            lines.append(f"  {lease} connection held by {holder or 'nobody'}")
    if "(nobody)" in owners:
        lines.append(f"  unowned partitions: {', '.join(owners['(nobody)'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0
    lean_env()

    from picobot.config import load_client_config, load_config, secrets, summary
    from picobot.core.errors import ConfigError, StartupError

    path = args.config or _default_config()
    try:
        # `status` only needs the address (and the token): not every channel's secrets.
        config = (load_client_config if args.command == "status" else load_config)(path)
    except ConfigError as exc:
        print(f"picobot: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "check":
        print(f"config OK ({path or 'built-in defaults'}): {summary(config)}")
        return 0
    if args.command == "status":
        return _status(config)

    from picobot.runtime.logs import setup_logging

    setup_logging(
        config.log.level,
        config.log.format,
        secrets(config),
        config.log.content,
        config.log.event_lines_per_second,
    )
    if args.command == "chat":
        from picobot.runtime.terminal import chat

        return chat(config, args.session)

    import asyncio

    from picobot.runtime.main import run, run_loop

    try:
        return run_loop(run(config, config_path=path))
    except ConfigError as exc:
        print(f"picobot: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"picobot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
