"""Platform adapters. Each is imported only when enabled, so unused SDKs are never loaded."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from picobot.core.channel import Channel

# name -> "module:Class"; absolute module names that never shadow the SDK packages.
REGISTRY: dict[str, str] = {
    "telegram": "channels.telegram_channel:TelegramChannel",
    "discord": "channels.discord_channel:DiscordChannel",
    "slack": "channels.slack_channel:SlackChannel",
    "web": "channels.webchat_channel:WebChatChannel",
}

# Optional imports an SDK makes at import time for features picobot does not use, kept out.
# python-telegram-bot imports cryptography (+8 MB RSS) when it is installed, only for Telegram
# Passport; mcp's pyjwt[crypto] installs it. PTB then runs without Passport, which picobot never
# asks for; cryptography stays importable for later users (mcp, when a server needs it).
UNUSED: dict[str, tuple[str, ...]] = {"telegram": ("cryptography",)}


def load(name: str) -> type[Channel]:
    """The adapter class for `name`, importing its module (and SDK) now.

    :raises KeyError: for an unknown channel name.
    :raises ImportError: when the platform's extra is not installed.
    """
    module_name, _, class_name = REGISTRY[name].partition(":")
    with _kept_out(UNUSED.get(name, ())):
        module = importlib.import_module(module_name)
    cls: type[Channel] = getattr(module, class_name)
    return cls


@contextlib.contextmanager
def _kept_out(packages: tuple[str, ...]) -> Iterator[None]:
    """Imports of `packages` raise ImportError meanwhile (a None entry in sys.modules, which the
    import system honours), unless one is imported already: then it is simply shared."""
    blocked = [p for p in packages if p not in sys.modules]
    for package in blocked:
        sys.modules[package] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for package in blocked:
            if sys.modules.get(package, 0) is None:
                del sys.modules[package]
