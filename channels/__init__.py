"""Platform adapters. Each is imported only when enabled, so unused SDKs are never loaded."""

from __future__ import annotations

import importlib
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


def load(name: str) -> type[Channel]:
    """The adapter class for `name`, importing its module (and SDK) now.

    :raises KeyError: for an unknown channel name.
    :raises ImportError: when the platform's extra is not installed.
    """
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Channel] = getattr(module, class_name)
    return cls
