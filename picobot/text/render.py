"""Markdown (as the model writes it) → each platform's format, plus the visible text.

The Markdown is parsed with markdown-it-py (CommonMark + strikethrough + tables, raw HTML off)
and the syntax tree is walked once per format. Parsing never fails, so half-written Markdown
from a stream (an unclosed ``**``, an unclosed fence) still renders; for Telegram the output is
always well-formed HTML with only the tags the Bot API allows, properly nested, and every
``<``, ``>`` and ``&`` of the text escaped.

Formats:

* ``telegram_html``: Bot API HTML (``parse_mode="HTML"``); ``visible`` is the text Telegram
  shows, which is what its 4096-character limit counts.
* ``slack_mrkdwn``: Slack's mrkdwn; ``visible`` is the plain rendering.
* ``discord`` and ``markdown``: the Markdown unchanged (Discord and the web chat render it).
* ``plain``: markup removed, still readable (links as "text (url)").
"""

from __future__ import annotations

import builtins
import re
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple, get_args

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from picobot.core.channel import Format, Rendered

__all__ = [
    "FORMATS",
    "Format",
    "Rendered",
    "render",
    "to_plain",
    "to_slack_mrkdwn",
    "to_telegram_html",
    "visible_text_of_telegram_html",
]

FORMATS: frozenset[str] = frozenset(get_args(Format))


# Raw HTML off: "<script>" in the model's text is text. Linkify off: bare URLs stay text
# (every platform auto-links them itself).
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["strikethrough", "table"])

_LINK_SCHEMES = ("http:", "https:", "tg:", "mailto:")
_RULE = "———"
_BULLET = "• "


def render(markdown: str, fmt: Format) -> Rendered:
    """Render Markdown for a platform.

    :raises ValueError: if ``fmt`` is not a known :data:`Format`.
    """
    if fmt == "telegram_html":
        html = _Telegram().document(markdown)
        return Rendered(html, "HTML", visible_text_of_telegram_html(html))
    if fmt == "slack_mrkdwn":
        tree = _parse(markdown)
        return Rendered(_Slack().document(markdown, tree), None, _Plain().document(markdown, tree))
    if fmt == "plain":
        text = to_plain(markdown)
        return Rendered(text, None, text)
    if fmt in ("discord", "markdown"):
        return Rendered(markdown, None, markdown)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")


def to_telegram_html(markdown: str) -> str:
    """Markdown → Telegram Bot API HTML (tags b, i, s, code, pre, a, blockquote only)."""
    return _Telegram().document(markdown)


def to_slack_mrkdwn(markdown: str) -> str:
    """Markdown → Slack mrkdwn (``*bold*``, ``_italic_``, ``<url|text>``; ``& < >`` escaped)."""
    return _Slack().document(markdown)


def to_plain(markdown: str) -> str:
    """Markdown → readable plain text: ``**bold**`` → ``bold``, code blocks → their content,
    links → ``text (url)``, lists → ``• item``."""
    return _Plain().document(markdown)


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


def _parse(markdown: str) -> SyntaxTreeNode:
    return SyntaxTreeNode(_MD.parse(markdown))


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return _escape_html(text).replace('"', "&quot;")


def _linkable(url: str) -> bool:
    return url.lower().startswith(_LINK_SCHEMES)


def _plain_inline(node: SyntaxTreeNode) -> str:
    """The text of an inline node without any markup (alt texts, table cells, link texts)."""
    parts = []
    for child in node.children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        else:
            parts.append(_plain_inline(child))
    return "".join(parts)


def _width(text: str) -> int:
    """Columns the text takes in a monospace font (wide CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


class _Line(NamedTuple):
    text: str
    verbatim: bool = False  # a line of code: never re-indented or stripped


class _Renderer:
    """Walks markdown-it's syntax tree; subclasses say what each construct looks like."""

    in_heading = False
    in_link = False

    def document(self, markdown: str, tree: SyntaxTreeNode | None = None) -> str:
        lines = self.blocks((tree or _parse(markdown)).children)
        text = "\n".join(line.text for line in lines).strip("\n").rstrip()
        if not text.strip() and markdown.strip():
            # Markup that shows nothing (an empty code block, "[]()"): a message must not be
            # empty, so show the source as text.
            return self.escape(markdown.strip())
        return text

    # -- blocks ---------------------------------------------------------------------------

    def blocks(self, nodes: Iterable[SyntaxTreeNode]) -> list[_Line]:
        out: list[_Line] = []
        tight = False  # a tight list's paragraphs are "hidden": no blank line around them
        for node in nodes:
            lines = self.block(node)
            if not lines:
                continue
            hidden = node.type == "paragraph" and node.hidden
            if out and not (tight or hidden):
                out.append(_Line(""))
            out.extend(lines)
            tight = hidden
        return out

    def block(self, node: SyntaxTreeNode) -> list[_Line]:
        kind = node.type
        if kind == "paragraph":
            return self.text_lines(self.inline(node))
        if kind == "heading":
            return self.text_lines(self.heading(node))
        if kind in ("bullet_list", "ordered_list"):
            return self.list(node)
        if kind == "blockquote":
            return self.quote(self.blocks(node.children))
        if kind in ("fence", "code_block"):
            content = node.content[:-1] if node.content.endswith("\n") else node.content
            if not content.strip():
                return []
            language = node.info.split()[0] if kind == "fence" and node.info.strip() else ""
            return self.code(content.split("\n"), language)
        if kind == "hr":
            return [_Line(_RULE)]
        if kind == "table":
            return self.table(node)
        if kind == "inline":
            return self.text_lines(self.inline(node))
        return self.blocks(node.children)  # anything else: its content

    def text_lines(self, text: str) -> list[_Line]:
        return [_Line(line.rstrip()) for line in text.split("\n")] if text.strip() else []

    def list(self, node: SyntaxTreeNode) -> list[_Line]:
        start = node.attrs.get("start", 1) if node.type == "ordered_list" else 1
        number = int(start) if isinstance(start, int | float | str) else 1
        out: builtins.list[_Line] = []
        for item in node.children:
            marker = f"{number}. " if node.type == "ordered_list" else _BULLET
            number += 1
            body = self.blocks(item.children)
            loose = any(c.type == "paragraph" and not c.hidden for c in item.children)
            if out and loose:
                out.append(_Line(""))
            if not body:
                out.append(_Line(marker.rstrip()))
                continue
            pad = " " * len(marker)
            out.append(_Line(marker + body[0].text, body[0].verbatim))
            for line in body[1:]:
                keep = line.verbatim or not line.text
                out.append(line if keep else _Line(pad + line.text))
        return out

    def table(self, node: SyntaxTreeNode) -> builtins.list[_Line]:
        rows: builtins.list[builtins.list[str]] = []
        aligns: builtins.list[str] = []
        for section in node.children:
            for row in section.children:
                rows.append(
                    [_plain_inline(c.children[0]) if c.children else "" for c in row.children]
                )
                if not aligns:
                    aligns = [str(cell.attrs.get("style", "")) for cell in row.children]
        if not rows:
            return []
        columns = max(len(r) for r in rows)
        widths = [max(_width(r[i]) for r in rows if i < len(r)) for i in range(columns)]

        def fmt(cells: builtins.list[str]) -> str:
            parts = []
            for i, width in enumerate(widths):
                cell = cells[i] if i < len(cells) else ""
                gap = width - _width(cell)
                align = aligns[i] if i < len(aligns) else ""
                if "right" in align:
                    parts.append(" " * gap + cell)
                elif "center" in align:
                    parts.append(" " * (gap // 2) + cell + " " * (gap - gap // 2))
                else:
                    parts.append(cell + " " * gap)
            return " | ".join(parts).rstrip()

        text = [fmt(rows[0]), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
        return self.code(text, "")

    # -- inline ---------------------------------------------------------------------------

    def inline(self, node: SyntaxTreeNode) -> str:
        return "".join(self.span(child) for child in node.children)

    def span(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "text":
            return self.escape(node.content)
        if kind in ("softbreak", "hardbreak"):
            return "\n"
        if kind == "code_inline":
            return self.code_span(node.content) if node.content else ""
        if kind in ("strong", "em", "s"):
            inner = self.inline(node)
            if not inner.strip() or (kind == "strong" and self.in_heading):
                return inner
            return self.style(kind, inner)
        if kind == "link":
            return self.link(str(node.attrs.get("href", "")), node)
        if kind == "image":
            return self.image(str(node.attrs.get("src", "")), _plain_inline(node))
        if node.children:
            return self.inline(node)
        return self.escape(node.content)

    # -- what subclasses define -----------------------------------------------------------

    def escape(self, text: str) -> str:
        return text

    def heading(self, node: SyntaxTreeNode) -> str:
        self.in_heading = True  # a heading is bold as a whole: no bold inside it
        try:
            return self.inline(node.children[0]) if node.children else ""
        finally:
            self.in_heading = False

    def quote(self, lines: builtins.list[_Line]) -> builtins.list[_Line]:
        return [_Line(f"> {line.text}" if line.text else ">", line.verbatim) for line in lines]

    def code(self, lines: builtins.list[str], language: str) -> builtins.list[_Line]:
        return [_Line(line, True) for line in lines]

    def code_span(self, code: str) -> str:
        return code

    def style(self, kind: str, inner: str) -> str:
        return inner

    def link(self, href: str, node: SyntaxTreeNode) -> str:
        text = _plain_inline(node)
        if not href or text == href or href == f"mailto:{text}":
            return text or href
        return f"{text} ({href})"

    def image(self, src: str, alt: str) -> str:
        return f"{alt} ({src})" if alt and src else alt or src


class _Plain(_Renderer):
    """Markup removed; the structure kept with bullets, "> " and line breaks."""


class _Telegram(_Renderer):
    _TAGS: dict[str, str] = {"strong": "b", "em": "i", "s": "s"}  # noqa: RUF012

    def __init__(self) -> None:
        self.quote_depth = 0

    def block(self, node: SyntaxTreeNode) -> list[_Line]:
        if node.type != "blockquote":
            return super().block(node)
        # Telegram has no nested quotes: an inner quote is part of the outer one.
        self.quote_depth += 1
        try:
            inner = self.blocks(node.children)
        finally:
            self.quote_depth -= 1
        return self.quote(inner) if self.quote_depth == 0 else inner

    def escape(self, text: str) -> str:
        return _escape_html(text)

    def heading(self, node: SyntaxTreeNode) -> str:
        inner = super().heading(node)
        return f"<b>{inner}</b>" if inner.strip() else inner

    def quote(self, lines: list[_Line]) -> list[_Line]:
        if not lines:
            return []
        return _wrap(lines, "<blockquote>", "</blockquote>")

    def code(self, lines: list[str], language: str) -> list[_Line]:
        body = [_Line(_escape_html(line), True) for line in lines]
        if language:
            opening = f'<pre><code class="language-{_escape_attr(language)}">'
            return _wrap(body, opening, "</code></pre>")
        return _wrap(body, "<pre>", "</pre>")

    def code_span(self, code: str) -> str:
        if self.in_link:  # Telegram drops code inside a link (or the link): keep the link
            return _escape_html(code)
        return f"<code>{_escape_html(code)}</code>"

    def style(self, kind: str, inner: str) -> str:
        tag = self._TAGS[kind]
        return f"<{tag}>{inner}</{tag}>"

    def link(self, href: str, node: SyntaxTreeNode) -> str:
        self.in_link = True
        try:
            inner = self.inline(node)
        finally:
            self.in_link = False
        if not _linkable(href):
            return inner  # relative or unknown scheme: Telegram would reject or drop it
        text = inner if inner.strip() else self.escape(href)
        return f'<a href="{_escape_attr(href)}">{text}</a>'

    def image(self, src: str, alt: str) -> str:
        if self.in_link or not _linkable(src):  # links cannot nest
            return self.escape(alt)
        return f'<a href="{_escape_attr(src)}">{self.escape(alt or "image")}</a>'


class _Slack(_Renderer):
    _MARKS: dict[str, str] = {"strong": "*", "em": "_", "s": "~"}  # noqa: RUF012

    def escape(self, text: str) -> str:
        return _escape_html(text)

    def heading(self, node: SyntaxTreeNode) -> str:
        inner = super().heading(node)
        return f"*{inner}*" if inner.strip() else inner

    def code(self, lines: list[str], language: str) -> list[_Line]:
        # Slack has no language tag on code blocks.
        return [_Line("```"), *(_Line(_escape_html(line), True) for line in lines), _Line("```")]

    def code_span(self, code: str) -> str:
        return f"`{_escape_html(code)}`"

    def style(self, kind: str, inner: str) -> str:
        mark = self._MARKS[kind]
        return f"{mark}{inner}{mark}"

    def link(self, href: str, node: SyntaxTreeNode) -> str:
        text = _plain_inline(node)
        if not _linkable(href):
            return self.escape(text)
        if not text or text == href or href == f"mailto:{text}":
            return f"<{_escape_html(href)}>"
        return f"<{_escape_html(href)}|{_escape_html(text)}>"

    def image(self, src: str, alt: str) -> str:
        if not _linkable(src):
            return self.escape(alt)
        return f"<{_escape_html(src)}|{_escape_html(alt or 'image')}>"


def _wrap(lines: list[_Line], opening: str, closing: str) -> list[_Line]:
    """Put ``opening`` before the first line and ``closing`` after the last."""
    first, last = lines[0], lines[-1]
    if len(lines) == 1:
        return [_Line(opening + first.text + closing, first.verbatim)]
    return [
        _Line(opening + first.text, first.verbatim),
        *lines[1:-1],
        _Line(last.text + closing, last.verbatim),
    ]
