"""Text → platform-ready chunks: split the Markdown, render each piece, re-split any piece
that rendering grew past the limit. Shared by the dispatcher and the streamer."""

from __future__ import annotations

import functools

from picobot.core.channel import Capabilities
from picobot.core.values import value
from picobot.text.render import Rendered, render
from picobot.text.split import Measure, codepoints, split_markdown, utf16_units

MIN_LIMIT = 64


@value(frozen=True, slots=True)
class Chunk:
    markdown: str  # the source, kept to re-render as plain text if the platform rejects markup
    rendered: Rendered


def measure_for(caps: Capabilities) -> Measure:
    return utf16_units if caps.length_unit == "utf16" else codepoints


def size_of(rendered: Rendered, caps: Capabilities) -> int:
    """The length the platform checks, in its own unit."""
    return measure_for(caps)(rendered.visible if caps.measure_visible else rendered.text)


def render_chunks(text: str, caps: Capabilities, *, plain: bool = False) -> list[Chunk]:
    """Split `text` into chunks that each fit `caps.max_length` once rendered."""
    return list(_render_chunks(text, caps, plain))


# The last results are kept: a streamed tick's text is rendered by the streamer (does it still
# fit?) and again by the door that sends it, a streamed reply's final text likewise.
@functools.lru_cache(maxsize=8)
def _render_chunks(text: str, caps: Capabilities, plain: bool) -> tuple[Chunk, ...]:
    fmt = "plain" if plain else caps.format
    return tuple(_fit(text, caps, fmt, caps.max_length))


def _fit(text: str, caps: Capabilities, fmt: str, limit: int) -> list[Chunk]:
    chunks = []
    for piece in split_markdown(text, limit, measure_for(caps)):
        rendered = render(piece, fmt)  # type: ignore[arg-type]
        size = size_of(rendered, caps)
        if size <= caps.max_length:
            chunks.append(Chunk(piece, rendered))
            continue
        # Rendering grew this piece (escaping, list bullets): split it smaller, proportionally.
        smaller = max(MIN_LIMIT, min(limit - 1, limit * caps.max_length // size - 8))
        if smaller >= limit:
            raise ValueError(f"cannot fit text into {caps.max_length} once rendered as {fmt}")
        chunks.extend(_fit(piece, caps, fmt, smaller))
    return chunks


def plain_again(chunk: Chunk) -> Rendered:
    """The chunk as plain text, for a platform that rejected its formatting."""
    return render(chunk.markdown, "plain")
