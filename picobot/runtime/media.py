"""The media parts of a daemon, assembled from the config: the store and its janitor, the
OpenAI-compatible media client (STT, TTS, images), and what the agent gets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from picobot.agent.image_tool import generate_image_tool
from picobot.agent.media import AgentMedia
from picobot.agent.tools import ToolRegistry
from picobot.config import Config
from picobot.core import metrics
from picobot.core.channel import Channel
from picobot.media.inbound import MediaIntake
from picobot.media.store import DIR_NAME as MEDIA_DIR
from picobot.media.store import MediaStore

if TYPE_CHECKING:
    from picobot.media.openai_media import OpenAIMedia

log = logging.getLogger("picobot.media")

JANITOR_INTERVAL = 3600.0


class MediaRuntime:
    """Resource handling: `start()` creates the store's directory and the janitor task;
    `aclose()` stops the janitor and closes the media client."""

    def __init__(self, config: Config) -> None:
        media = config.media
        self.store = MediaStore(
            media.dir or config.data_dir / MEDIA_DIR,
            max_bytes=media.max_bytes,
            ttl=media.ttl,
            writer="" if media.dir is None else _writer(config),
        )
        self.client = _client(config)
        stt = config.stt_enabled and self.client is not None
        self.intake = MediaIntake(
            self.store,
            {},
            vision=media.vision,
            max_inline_chars=media.max_inline_chars,
            transcribe=self.client.transcribe if stt and self.client else None,
        )
        speak = self.client.speak if media.voice_replies and self.client else None
        self.agent = AgentMedia(self.intake, speak=speak)
        self._images = config.images.enabled
        self._janitor: asyncio.Task[None] | None = None

    def bind(self, channels: Mapping[str, Channel]) -> None:
        """The running channels, by name: where inbound files are downloaded from."""
        self.intake.sources = channels

    def add_tools(self, tools: ToolRegistry) -> None:
        """`generate_image`, when `images.enabled`."""
        if self._images and self.client is not None and "generate_image" not in tools:
            tools.register(generate_image_tool(self.client.generate_image, self.store))

    def start(self) -> None:
        self.store.open()
        self._janitor = asyncio.create_task(
            self.store.run_janitor(JANITOR_INTERVAL), name="media janitor"
        )

    def statistics(self) -> dict[str, int]:
        """Files stored now and their bytes; files received and sent since the start."""
        files, size = self.store.stats()
        counts = {"in": 0, "out": 0}
        for metric in metrics.MEDIA.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["direction"]] += int(sample.value)
        return {"files": files, "bytes": size, "received": counts["in"], "sent": counts["out"]}

    async def aclose(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        if self.client is not None:
            await self.client.aclose()


def _client(config: Config) -> OpenAIMedia | None:
    """The media client when anything needs one (transcription, voice replies, images)."""
    stt, llm = config.stt, config.llm
    wanted = config.stt_enabled or config.media.voice_replies or config.images.enabled
    base_url = stt.base_url or llm.base_url
    key = stt.api_key or llm.api_key
    if not wanted or (base_url is None and key is None):
        if wanted:
            log.warning("media: no endpoint for stt/tts/images (set llm or stt base_url/api_key)")
        return None
    # Imported here: the openai SDK costs ~20 MB, and most setups need no media endpoint.
    from picobot.media.openai_media import OpenAIMedia

    return OpenAIMedia(
        base_url=base_url,
        api_key=key.get_secret_value() if key else None,
        stt_model=stt.model,
        tts_model=config.tts.model,
        voice=config.tts.voice,
        image_model=config.images.model,
        image_size=config.images.size,
    )


def _writer(config: Config) -> str:
    """This daemon's name among those sharing `media.dir`: stable across its restarts."""
    digest = hashlib.sha256(str(config.data_dir.resolve()).encode()).hexdigest()[:12]
    return f"{socket.gethostname()}-{digest}"
