"""A scripted model that streams a fixed text, at once or at a steady pace: for tests and
benchmarks (how a real model's tokens arrive), never used by the daemon itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from picobot.agent.llm import Finish, LLMEvent, Message, TextDelta


class PacedLLM:
    name = "paced"

    def __init__(self, text: str, *, duration: float = 0.0, pieces: int = 1) -> None:
        """`text` in `pieces` deltas over `duration` s (default: at once, in one delta)."""
        self.text = text
        self.duration = duration
        self.pieces = pieces

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        size = max(1, -(-len(self.text) // self.pieces))
        for start in range(0, len(self.text), size):
            await asyncio.sleep(self.duration / self.pieces)  # pacing, not synchronisation
            yield TextDelta(self.text[start : start + size])
        yield Finish("stop")

    async def aclose(self) -> None:
        return None
