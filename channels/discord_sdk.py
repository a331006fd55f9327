"""discord.py, imported once without its `audioop` DeprecationWarning (voice, unused here)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

__all__ = ["discord"]
