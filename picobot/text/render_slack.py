"""Markdown → Slack mrkdwn."""

from __future__ import annotations

from picobot.text.renderer import Line, Renderer, escape_html, linkable, plain_inline
from picobot.text.syntax import Node


def to_slack_mrkdwn(markdown: str) -> str:
    """Markdown → Slack mrkdwn (``*bold*``, ``_italic_``, ``<url|text>``; ``& < >`` escaped)."""
    return SlackRenderer().document(markdown)


class SlackRenderer(Renderer):
    _MARKS: dict[str, str] = {"strong": "*", "em": "_", "s": "~"}  # noqa: RUF012

    def escape(self, text: str) -> str:
        return escape_html(text)

    def heading(self, node: Node) -> str:
        inner = super().heading(node)
        return f"*{inner}*" if inner.strip() else inner

    def code(self, lines: list[str], language: str) -> list[Line]:
        # Slack has no language tag on code blocks.
        return [Line("```"), *(Line(escape_html(line), True) for line in lines), Line("```")]

    def code_span(self, code: str) -> str:
        return f"`{escape_html(code)}`"

    def style(self, kind: str, inner: str) -> str:
        mark = self._MARKS[kind]
        return f"{mark}{inner}{mark}"

    def link(self, href: str, node: Node) -> str:
        text = plain_inline(node)
        if not linkable(href):
            return self.escape(text)
        if not text or text == href or href == f"mailto:{text}":
            return f"<{escape_html(href)}>"
        return f"<{escape_html(href)}|{escape_html(text)}>"

    def image(self, src: str, alt: str) -> str:
        if not linkable(src):
            return self.escape(alt)
        return f"<{escape_html(src)}|{escape_html(alt or 'image')}>"
