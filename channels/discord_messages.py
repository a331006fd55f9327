"""Discord message → `InboundMessage`: bots, guild/channel filters and system messages dropped."""

from __future__ import annotations

import re

from channels.discord_sdk import discord
from channels.downloads import kind_of
from picobot.config import DiscordConfig
from picobot.core.messages import Attachment, InboundMessage, Sender

CHANNEL = "discord"
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)


def to_inbound(
    message: discord.Message, me: discord.ClientUser | None, config: DiscordConfig
) -> InboundMessage | None:
    """The message for the core, or None when it is not for us (bots, filters, system)."""
    author = message.author
    if me is None or author.bot or author.id == me.id or message.webhook_id is not None:
        return None
    if message.type not in ANSWERED_TYPES:
        return None
    channel, guild = message.channel, message.guild
    thread = channel if isinstance(channel, discord.Thread) else None
    if guild is not None:
        allowed_guilds, allowed_channels = config.allow_guilds, config.allow_channels
        if allowed_guilds and str(guild.id) not in allowed_guilds:
            return None
        ids = {str(channel.id)} | ({str(thread.parent_id)} if thread else set())
        if allowed_channels and not ids & set(allowed_channels):
            return None
    role = guild.self_role if guild is not None else None
    mentions = [rf"<@!?{me.id}>"]
    if role is not None:
        mentions.append(rf"<@&{role.id}>")
    resolved = message.reference.resolved if message.reference else None
    mentioned = (
        any(user.id == me.id for user in message.mentions)
        or (role is not None and role.id in message.raw_role_mentions)
        or (isinstance(resolved, discord.Message) and resolved.author.id == me.id)
    )
    text = re.sub("|".join(mentions), "", message.content).strip()
    files = tuple(_attachment(a) for a in message.attachments)
    if not text and not files:
        return None  # nothing to answer (a bare mention)
    return InboundMessage(
        channel=CHANNEL,
        chat_id=str(channel.id),
        sender=Sender(str(author.id), author.name, author.display_name),
        text=text,
        id=f"discord:{message.id}",
        message_id=str(message.id),
        thread=str(thread.id) if thread else None,
        is_group=guild is not None,
        mentioned=mentioned,
        metadata={"guild_id": str(guild.id)} if guild is not None else {},
        attachments=files,
    )


def _attachment(item: discord.Attachment) -> Attachment:
    mime = (item.content_type or "").partition(";")[0]
    return Attachment(
        kind_of(mime, voice=item.is_voice_message()),
        name=item.filename,
        mime=mime,
        size=item.size,
        source=item.url,
        width=item.width,
        height=item.height,
    )
