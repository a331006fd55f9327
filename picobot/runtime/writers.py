"""How a turn's reply reaches its chat: the channel's own writer (the web chat), streamed by
edits, sent in pieces, or buffered whole when the channel is gone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from picobot.agent.loop import BufferedReply
from picobot.config import ChannelConfig, Config
from picobot.core.channel import Channel, ReplyWriter, WritesReplies
from picobot.core.messages import InboundMessage
from picobot.outbound.door import Outbound
from picobot.outbound.streaming import PieceReply, StreamingReply

log = logging.getLogger("picobot")


class Writers:
    """The reply writer for each turn; reads the config anew (a reload may change streaming)."""

    def __init__(
        self, config: Callable[[], Config], channels: Mapping[str, Channel], outbound: Outbound
    ) -> None:
        self._config, self._channels, self._outbound = config, channels, outbound

    def __call__(self, inbound: InboundMessage) -> ReplyWriter:
        channel = self._channels.get(inbound.channel)
        if channel is None:
            return BufferedReply(inbound, self._outbound.post)
        if isinstance(channel, WritesReplies):
            return channel.make_writer(inbound)
        caps = channel.capabilities
        settings = getattr(self._config().channels, inbound.channel)
        # Platform channels have streaming settings; the web chat has none (no exception here:
        # this runs for every message).
        streaming = settings.streaming if isinstance(settings, ChannelConfig) else None
        if caps.can_edit and streaming is not None and streaming.enabled:
            return StreamingReply(
                inbound,
                caps,
                self._outbound.deliver,
                interval=streaming.flush_interval or caps.flush_interval,
                tool_progress=streaming.tool_progress,
                mode=streaming.mode,
            )
        return PieceReply(inbound, self._outbound.deliver)


def warn_unimplemented(config: Config, names: list[str]) -> None:
    """Streaming settings accepted by the config but not built yet: say so once at start."""
    for name in names:
        settings = getattr(config.channels, name)
        streaming = settings.streaming if isinstance(settings, ChannelConfig) else None
        if streaming is not None and (streaming.mode == "native" or streaming.show_reasoning):
            log.warning(
                "channels.%s.streaming: mode native and show_reasoning are not implemented "
                "yet; streaming by edits",
                name,
            )
