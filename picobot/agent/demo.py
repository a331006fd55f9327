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


MAX_QUOTED = 20  # lines of the user's text echoed (an inlined document can be long)
# How the agent describes attachments: "[image: cat.png (image, image/png, 2 kB, 64×48 px)]".
_RECEIVED = re.compile(r"^\[(image|file|voice note|audio file|attachment)\b.*\]$")


def _read(content: Any) -> tuple[str, int]:
    """The text of a user message's content, and how many images it holds."""
    if isinstance(content, list):
        text = "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        return text, sum(1 for p in content if p.get("type") == "image_url")
    return str(content or ""), 0


class DemoLLM:
    name = "demo"

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay  # seconds per word: the pace of a real model

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        content = next(
            (m.get("content") for m in reversed(messages) if m.get("role") == "user"), ""
        )
        said, pictures = _read(content)
        lines = said.strip().splitlines()
        received = [line[1:-1] for line in lines if _RECEIVED.match(line)]
        rest = [line for line in lines if not _RECEIVED.match(line)]
        while rest and not rest[0].strip():
            rest.pop(0)
        reply = f"{DEMO_LABEL} "
        if received:
            listed = "\n".join(f"- {item}" for item in received)
            reply += f"You sent:\n\n{listed}\n\n"
            if pictures:
                reply += (
                    f"({pictures} image{'s' if pictures > 1 else ''} shown to me as pixels)\n\n"
                )
        if rest:
            more = ["> …"] if len(rest) > MAX_QUOTED else []
            quoted = "\n".join([f"> {line}" for line in rest[:MAX_QUOTED]] + more)
            reply += f"You said:\n\n{quoted}\n\n"
        reply += HOW_TO
        for word in re.findall(r"\S+\s*", reply):
            if self.delay:
                await asyncio.sleep(self.delay)  # pacing, not synchronisation
            yield TextDelta(word)
        yield Usage(len(said.split()), len(reply.split()))
        yield Finish("stop")

    async def aclose(self) -> None:
        return None
