"""Command line: `picobot run | check | chat | --version`.

Reads the environment and the config file once, then hands frozen objects down. Heavy modules
(platform SDKs, aiohttp, openai) are imported inside the commands, so `--help` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from picobot import __version__

EXIT_CONFIG = 2


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
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", "-c", metavar="PATH", default=None, help=config_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0

    from picobot.config import load_config, secrets, summary
    from picobot.errors import ConfigError

    path = args.config or _default_config()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"picobot: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "check":
        print(f"config OK ({path or 'built-in defaults'}): {summary(config)}")
        return 0

    from picobot.logs import setup_logging

    setup_logging(config.log.level, config.log.format, secrets(config))
    if args.command == "chat":
        from picobot.terminal import chat

        return chat(config)

    import asyncio

    from picobot.daemon import run

    try:
        return asyncio.run(run(config))
    except ConfigError as exc:
        print(f"picobot: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
