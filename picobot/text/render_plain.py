"""Markdown → plain text, rendered part by part with a cache (streamed replies)."""

from __future__ import annotations

from collections import OrderedDict

from picobot.text.blocks import parts
from picobot.text.renderer import Renderer
from picobot.text.syntax import parse


class PlainRenderer(Renderer):
    """Markup removed; the structure kept with bullets, "> " and line breaks."""


def to_plain(markdown: str) -> str:
    """Markdown → readable plain text: ``**bold**`` → ``bold``, code blocks → their content,
    links → ``text (url)``, lists → ``• item``.

    Rendered part by part (`blocks.parts`), each part once: a streamed reply is rendered on
    every tick, and only its new parts cost anything.
    """
    shown = [text for text in map(_PARTS.plain, parts(markdown)) if text is not None]
    return PlainRenderer().finish(markdown, "\n\n".join(shown))  # a blank line between blocks


class _PartCache:
    """Plain renderings of the parts seen last, up to `budget` characters of Markdown.

    Bounded by size, not count: a streamed message's parts are all read again on every tick,
    and a cache that held fewer of them than there are would miss each one (least recently
    used is always the next one read).
    """

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._size = 0
        self._items: OrderedDict[str, str | None] = OrderedDict()

    def plain(self, part: str) -> str | None:
        """The part's lines, joined; None if it shows no line at all."""
        if part in self._items:
            self._items.move_to_end(part)
            return self._items[part]
        lines = PlainRenderer().blocks(parse(part).children)
        text = "\n".join(line.text for line in lines) if lines else None
        if len(part) <= self._budget // 16:
            self._items[part] = text
            self._size += len(part)
            while self._size > self._budget:
                self._size -= len(self._items.popitem(last=False)[0])
        return text


_PARTS = _PartCache(budget=256_000)  # up to ~1 MB with the renderings
