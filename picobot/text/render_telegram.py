"""Markdown → Telegram Bot API HTML, and the text Telegram shows for it."""

from __future__ import annotations

import re

from picobot.text.renderer import Line, Renderer, escape_attr, escape_html, linkable
from picobot.text.syntax import Node

_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d+)|#[xX]([0-9a-fA-F]+));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def visible_text_of_telegram_html(html: str) -> str:
    """The text Telegram shows for ``html``: tags removed, entities decoded.

    Meant for HTML from :func:`to_telegram_html` (every ``<`` in its text is escaped).
    Telegram also trims leading and trailing whitespace; this function does not.
    """
    return _ENTITY.sub(_decode_entity, _TAG.sub("", html))


def _decode_entity(m: re.Match[str]) -> str:
    if m.group(1):
        return _NAMED[m.group(1)]
    code = int(m.group(2), 10) if m.group(2) else int(m.group(3), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group()


def to_telegram_html(markdown: str) -> str:
    """Markdown → Telegram Bot API HTML (tags b, i, s, code, pre, a, blockquote only)."""
    return TelegramRenderer().document(markdown)


class TelegramRenderer(Renderer):
    _TAGS: dict[str, str] = {"strong": "b", "em": "i", "s": "s"}  # noqa: RUF012

    def __init__(self) -> None:
        self.quote_depth = 0
        self._visible = ("", "")  # the last text asked about, and what it shows

    def visible(self, text: str) -> str:
        # Asked twice of a document: by `finish` ("<code> </code>" shows nothing), then for
        # `Rendered.visible`.
        if text is not self._visible[0]:
            self._visible = (text, visible_text_of_telegram_html(text))
        return self._visible[1]

    def block(self, node: Node) -> list[Line]:
        if node.kind != "blockquote":
            return super().block(node)
        # Telegram has no nested quotes: an inner quote is part of the outer one.
        self.quote_depth += 1
        try:
            inner = self.blocks(node.children)
        finally:
            self.quote_depth -= 1
        return self.quote(inner) if self.quote_depth == 0 else inner

    def escape(self, text: str) -> str:
        return escape_html(text)

    def heading(self, node: Node) -> str:
        inner = super().heading(node)
        return f"<b>{inner}</b>" if inner.strip() else inner

    def quote(self, lines: list[Line]) -> list[Line]:
        if not lines:
            return []
        return _wrap(lines, "<blockquote>", "</blockquote>")

    def code(self, lines: list[str], language: str) -> list[Line]:
        body = [Line(escape_html(line), True) for line in lines]
        if language:
            opening = f'<pre><code class="language-{escape_attr(language)}">'
            return _wrap(body, opening, "</code></pre>")
        return _wrap(body, "<pre>", "</pre>")

    def code_span(self, code: str) -> str:
        if self.in_link:  # Telegram drops code inside a link (or the link): keep the link
            return escape_html(code)
        return f"<code>{escape_html(code)}</code>"

    def style(self, kind: str, inner: str) -> str:
        tag = self._TAGS[kind]
        return f"<{tag}>{inner}</{tag}>"

    def link(self, href: str, node: Node) -> str:
        self.in_link = True
        try:
            inner = self.inline(node)
        finally:
            self.in_link = False
        if not linkable(href):
            return inner  # relative or unknown scheme: Telegram would reject or drop it
        text = inner if inner.strip() else self.escape(href)
        return f'<a href="{escape_attr(href)}">{text}</a>'

    def image(self, src: str, alt: str) -> str:
        if self.in_link or not linkable(src):  # links cannot nest
            return self.escape(alt)
        return f'<a href="{escape_attr(src)}">{self.escape(alt or "image")}</a>'


def _wrap(lines: list[Line], opening: str, closing: str) -> list[Line]:
    """Put ``opening`` before the first line and ``closing`` after the last."""
    first, last = lines[0], lines[-1]
    if len(lines) == 1:
        return [Line(opening + first.text + closing, first.verbatim)]
    return [
        Line(opening + first.text, first.verbatim),
        *lines[1:-1],
        Line(last.text + closing, last.verbatim),
    ]
