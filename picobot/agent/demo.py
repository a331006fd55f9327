"""The offline demo model: no account, no network. It streams a short, clearly labelled
answer word by word at a realistic pace, so the whole pipeline can be seen working."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from picobot.agent.llm import Finish, LLMEvent, Message, TextDelta, Usage

DEMO_LABEL = "🤖 *[demo model]*"
HOW_TO = (
    "No language model is configured, so this demo model only echoes you. "
    "To use a real one, set `llm.provider: openai` with `llm.base_url`, `llm.api_key` and "
    "`llm.model` in `config.yaml` (any OpenAI-compatible endpoint: OpenAI, OpenRouter, "
    "Ollama, vLLM, llama.cpp)."
)


class DemoLLM:
    name = "demo"

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay  # seconds per word: the pace of a real model

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        said = next(
            (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        quoted = "\n".join(f"> {line}" for line in said.strip().splitlines())
        reply = f"{DEMO_LABEL} You said:\n\n{quoted}\n\n{HOW_TO}"
        for word in re.findall(r"\S+\s*", reply):
            if self.delay:
                await asyncio.sleep(self.delay)  # pacing, not synchronisation
            yield TextDelta(word)
        yield Usage(len(said.split()), len(reply.split()))
        yield Finish("stop")

    async def aclose(self) -> None:
        return None
