"""picobot: one AI agent on Telegram, Discord, Slack and a built-in web chat."""

__version__ = "0.1.0"
