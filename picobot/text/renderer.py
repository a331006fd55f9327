"""The tree walker every output format builds on (the tree: `picobot.text.syntax`)."""

from __future__ import annotations

import builtins
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

from picobot.text.syntax import Node, parse, without_surrogates

_LINK_SCHEMES = ("http:", "https:", "tg:", "mailto:")
_RULE = "———"
_BULLET = "• "


def escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    return escape_html(text).replace('"', "&quot;")


def linkable(url: str) -> bool:
    return url.lower().startswith(_LINK_SCHEMES)


def plain_inline(node: Node) -> str:
    """The text of an inline node without any markup (alt texts, table cells, link texts)."""
    parts = []
    for child in node.children:
        if child.kind in ("text", "code_inline"):
            parts.append(child.content)
        elif child.kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        else:
            parts.append(plain_inline(child))
    return "".join(parts)


def _width(text: str) -> int:
    """Columns the text takes in a monospace font (wide CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


class Line(NamedTuple):
    text: str
    verbatim: bool = False  # a line of code: never re-indented or stripped


class Renderer:
    """Walks the syntax tree; subclasses say what each construct looks like."""

    in_heading = False
    in_link = False

    def document(self, markdown: str, tree: Node | None = None) -> str:
        lines = self.blocks((tree or parse(markdown)).children)
        return self.finish(markdown, "\n".join(line.text for line in lines))

    def finish(self, markdown: str, text: str) -> str:
        """The document's text from its joined lines."""
        text = text.strip("\n").rstrip()
        if not self.visible(text).strip() and markdown.strip():
            # Markup that shows nothing (an empty code block, "[]()"): a message must not be
            # empty, so show the source as text.
            return self.escape(without_surrogates(markdown.strip()))
        return text

    def visible(self, text: str) -> str:
        return text

    # -- blocks ---------------------------------------------------------------------------

    def blocks(self, nodes: Iterable[Node]) -> list[Line]:
        out: list[Line] = []
        tight = False  # a tight list's paragraphs are "hidden": no blank line around them
        for node in nodes:
            lines = self.block(node)
            if not lines:
                continue
            hidden = node.kind == "paragraph" and node.hidden
            if out and not (tight or hidden):
                out.append(Line(""))
            out.extend(lines)
            tight = hidden
        return out

    def block(self, node: Node) -> list[Line]:
        kind = node.kind
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
            language = node.info.split()[0] if node.info.strip() else ""
            return self.code(content.split("\n"), language)
        if kind == "hr":
            return [Line(_RULE)]
        if kind == "table":
            return self.table(node)
        if kind == "html_block":  # raw HTML is text
            return self.text_lines(self.escape(node.content.rstrip("\n")))
        return self.blocks(node.children)  # anything else: its content

    def text_lines(self, text: str) -> list[Line]:
        return [Line(line.rstrip()) for line in text.split("\n")] if text.strip() else []

    def list(self, node: Node) -> list[Line]:
        number = node.number
        out: builtins.list[Line] = []
        for item in node.children:
            marker = f"{number}. " if node.kind == "ordered_list" else _BULLET
            number += 1
            body = self.blocks(item.children)
            loose = any(c.kind == "paragraph" and not c.hidden for c in item.children)
            if out and loose:
                out.append(Line(""))
            if not body:
                out.append(Line(marker.rstrip()))
                continue
            pad = " " * len(marker)
            out.append(Line(marker + body[0].text, body[0].verbatim))
            for line in body[1:]:
                keep = line.verbatim or not line.text
                out.append(line if keep else Line(pad + line.text))
        return out

    def table(self, node: Node) -> builtins.list[Line]:
        rows = [[plain_inline(cell) for cell in row.children] for row in node.children]
        aligns = node.aligns
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

    def inline(self, node: Node) -> str:
        return "".join([self.span(child) for child in node.children])

    def span(self, node: Node) -> str:
        kind = node.kind
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
            return self.link(node.content, node)
        if kind == "image":
            return self.image(node.content, plain_inline(node))
        if node.children:
            return self.inline(node)
        return self.escape(node.content)

    # -- what subclasses define -----------------------------------------------------------

    def escape(self, text: str) -> str:
        return text

    def heading(self, node: Node) -> str:
        self.in_heading = True  # a heading is bold as a whole: no bold inside it
        try:
            return self.inline(node)
        finally:
            self.in_heading = False

    def quote(self, lines: builtins.list[Line]) -> builtins.list[Line]:
        return [Line(f"> {line.text}" if line.text else ">", line.verbatim) for line in lines]

    def code(self, lines: builtins.list[str], language: str) -> builtins.list[Line]:
        return [Line(line, True) for line in lines]

    def code_span(self, code: str) -> str:
        return code

    def style(self, kind: str, inner: str) -> str:
        return inner

    def link(self, href: str, node: Node) -> str:
        text = plain_inline(node)
        if not href or text == href or href == f"mailto:{text}":
            return text or href
        return f"{text} ({href})"

    def image(self, src: str, alt: str) -> str:
        return f"{alt} ({src})" if alt and src else alt or src
