"""The offline demo model: no account, no network, and honest about being a demo.

It answers a few recognisable requests by exercising the real pipeline, streaming at a
realistic pace:

    time / date / today     a call of the real `time` tool, then an answer from its result
    demo / markdown / code  a heading, a numbered list, a table and a fenced code block
    long                    a reply longer than every platform's limit (it gets split)
    anything else           what it heard, what it can show, how to connect a real model

A message with files is answered with what arrived: each file's kind, type and size (and an
image's pixel size), as the agent described them to the model.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from picobot.agent.llm import Finish, LLMEvent, TextDelta, ToolCall, Usage
from picobot.core.messages import Message

DEMO_LABEL = "🤖 *[demo model]*"
HOW_TO = (
    "To use a real one, set `llm.provider: openai` with `llm.base_url`, `llm.api_key` and "
    "`llm.model` in `config.yaml` (any OpenAI-compatible endpoint: OpenAI, OpenRouter, "
    "Ollama, vLLM, llama.cpp)."
)
CAN_SHOW = (
    "I am the built-in demo model, not a real AI. Try: **what time is it?** (a real tool "
    "call), **demo** (Markdown: table, list, code) or **long** (a reply split into several "
    "messages); send /stop while I answer to stop me."
)
LONG_MIN_CHARS = 4096  # Telegram's limit, the largest that splits a chat reply (Discord: 2000)
PACE_DELTAS = 150  # a long reply streams in about this many deltas, not one per word
QUOTE_LINES = 3

_TIME = re.compile(r"\b(time|date|today|clock|what day)\b", re.IGNORECASE)
_SHOWCASE = re.compile(r"\b(demo|markdown|code)\b", re.IGNORECASE)
_LONG = re.compile(r"\blong\b", re.IGNORECASE)
_ZONE = re.compile(r"\b([A-Z][A-Za-z_]+/[A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_]+)?)\b")

SHOWCASE = f"""{DEMO_LABEL} Here is the Markdown every channel renders in its own format.

## What picobot does with a reply

1. **Streams** it as it is written (edits on Telegram, Discord and Slack; live on the web).
2. **Renders** it for each platform: *italic*, `code`, [links](https://example.org).
3. **Splits** it when it is too long, never inside a code block.

| Platform | Limit per message | Streaming |
|----------|------------------:|-----------|
| Telegram | 4096 characters   | edits     |
| Discord  | 2000 characters   | edits     |
| Slack    | 4000 characters   | edits     |
| Web chat | none              | live      |

```python
async def answer(question: str) -> str:
    reply = await model.complete(question)  # streamed, split, rate limited
    return reply
```

Ask **what time is it?** to see a tool call."""


def _long_reply() -> str:
    parts = [
        f"{DEMO_LABEL} A long reply. Each platform splits it at its own limit (Telegram "
        "4096 characters, Discord 2000), between paragraphs, never inside a code block."
    ]
    for n in range(1, 13):
        parts.append(
            f"### Part {n} of 12\n\n"
            f"This is paragraph {n}. It is long only so that the whole reply exceeds every "
            "chat platform's message limit: picobot cuts it at a paragraph or sentence "
            "boundary, renders each piece on its own, and sends the pieces in order, at the "
            "pace the platform allows. A reply is never lost for being too long."
        )
        if n % 4 == 0:
            parts.append(f"```text\ncode block {n // 4}: kept whole in one message\n```")
    parts.append(f"That was the end of the long reply. {HOW_TO}")
    return "\n\n".join(parts)


LONG_REPLY = _long_reply()


def _quote(said: str) -> str:
    lines = [ln for ln in said.strip().splitlines() if ln.strip() and not ln.startswith("```")]
    quoted = [f"> {ln[:200]}" for ln in lines[:QUOTE_LINES]]
    if len(lines) > QUOTE_LINES:
        quoted.append("> …")
    return "\n".join(quoted)


def _tool_names(tools: Sequence[dict[str, Any]] | None) -> set[str]:
    return {str(t.get("function", {}).get("name")) for t in tools or ()}


def answer(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None) -> str | ToolCall:
    """The demo's next step: a reply text, or a call of the `time` tool."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        result = str(last.get("content", ""))
        if result.startswith("Error:"):
            return f"{DEMO_LABEL} I called the real `time` tool, and it failed: {result}"
        return (
            f"{DEMO_LABEL} I called the real `time` tool, and it says: **{result}**.\n\n"
            "A real model does the same: it asks for a tool, picobot runs it and hands the "
            "result back, and the model answers from it."
        )
    content = next((m.get("content") for m in reversed(messages) if m["role"] == "user"), "")
    said, pictures = _read(content)
    received = [line[1:-1] for line in said.splitlines() if _RECEIVED.match(line)]
    if received:
        return _received(received, pictures, said)
    if _TIME.search(said):
        if "time" not in _tool_names(tools):
            return (
                f"{DEMO_LABEL} I would call the `time` tool for that, but it is not enabled: "
                "add `time` to `agent.tools` in `config.yaml`."
            )
        zone = _ZONE.search(said)
        args = {"timezone": zone.group(1)} if zone else {}
        return ToolCall(f"demo-{uuid.uuid4().hex[:12]}", "time", json.dumps(args))
    if _SHOWCASE.search(said):
        return SHOWCASE
    if _LONG.search(said):
        return LONG_REPLY
    return f"{DEMO_LABEL} You said:\n\n{_quote(said)}\n\n{CAN_SHOW} {HOW_TO}"


# How the agent describes attachments: "[image: cat.png (image, image/png, 2 kB, 64×48 px)]".
_RECEIVED = re.compile(r"^\[(image|file|voice note|audio file|attachment)\b.*\]$")


def _read(content: Any) -> tuple[str, int]:
    """The text of a user message's content, and how many images it holds."""
    if isinstance(content, list):
        text = "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        return text, sum(1 for p in content if p.get("type") == "image_url")
    return str(content or ""), 0


def _received(received: list[str], pictures: int, said: str) -> str:
    """What arrived with the message (kind, type, size, pixel size), how much text was read
    from files, then what was said (a caption or a voice note's transcript)."""
    listed = "\n".join(f"- {item}" for item in received)
    reply = f"{DEMO_LABEL} You sent:\n\n{listed}\n\n"
    if pictures:
        reply += f"({pictures} image{'s' if pictures > 1 else ''} shown to me as pixels)\n\n"
    rest: list[str] = []
    read, files, fenced = 0, 0, False
    for line in said.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            files += fenced
        elif fenced:
            read += bool(line.strip())  # a file's text, not the user's words
        elif not _RECEIVED.match(line):
            rest.append(line)
    if read:
        what = "a file" if files == 1 else f"{files} files"
        reply += f"(I was given the text of {what} too: {read} line{'s' * (read > 1)}.)\n\n"
    if "".join(rest).strip():
        quoted = _quote("\n".join(rest))
        reply += f"You said:\n\n{quoted}\n\n"
    return f"{reply}{CAN_SHOW} {HOW_TO}"


class DemoLLM:
    name = "demo"

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay  # seconds per delta: the pace of a real model

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        step = answer(messages, tools)
        prompt = sum(len(_read(m.get("content"))[0].split()) for m in messages)
        if isinstance(step, ToolCall):
            if self.delay:
                await asyncio.sleep(self.delay)  # pacing, not synchronisation
            yield step
            yield Usage(prompt, 1)
            yield Finish("tool_calls")
            return
        words = re.findall(r"\S+\s*", step)
        size = max(1, len(words) // PACE_DELTAS)
        for i in range(0, len(words), size):
            if self.delay:
                await asyncio.sleep(self.delay)  # pacing, not synchronisation
            yield TextDelta("".join(words[i : i + size]))
        yield Usage(prompt, len(words))
        yield Finish("stop")

    async def aclose(self) -> None:
        return None
