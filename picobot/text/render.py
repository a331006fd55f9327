"""Markdown (as the model writes it) → each platform's format, plus the visible text.

The Markdown is parsed with pyromark (pulldown-cmark: CommonMark + strikethrough + tables, raw
HTML shown as text; see `picobot.text.syntax`) and the syntax tree is walked once per format.
Parsing never fails, so half-written Markdown from a stream (an unclosed ``**``, an unclosed
fence) still renders; for Telegram the output is always well-formed HTML with only the tags
the Bot API allows, properly nested, and every ``<``, ``>`` and ``&`` of the text escaped.

Formats:

* ``telegram_html``: Bot API HTML (``parse_mode="HTML"``); ``visible`` is the text Telegram
  shows, which is what its 4096-character limit counts.
* ``slack_mrkdwn``: Slack's mrkdwn; ``visible`` is the plain rendering.
* ``discord`` and ``markdown``: the Markdown unchanged (Discord and the web chat render it).
* ``plain``: markup removed, still readable (links as "text (url)").
"""

from __future__ import annotations

import re
from typing import get_args

from picobot.core.channel import Format, Rendered
from picobot.text.render_plain import PlainRenderer, to_plain
from picobot.text.render_slack import SlackRenderer, to_slack_mrkdwn
from picobot.text.render_telegram import (
    TelegramRenderer,
    to_telegram_html,
    visible_text_of_telegram_html,
)
from picobot.text.syntax import parse

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


def render(markdown: str, fmt: Format) -> Rendered:
    """Render Markdown for a platform.

    :raises ValueError: if ``fmt`` is not a known :data:`Format`.
    """
    if fmt in _PLAIN_FORMATS and is_plain(markdown):
        # No Markdown syntax and nothing to escape: every format renders it as itself (the
        # parse and walk would cost ~10 µs a message, the check ~2 µs).
        return Rendered(markdown, _PLAIN_FORMATS[fmt], markdown)
    return render_markdown(markdown, fmt)


# Characters that may start Markdown syntax (emphasis, code, links, autolinks, entities,
# escapes, strikethrough, tables, headings, quotes) or that a format escapes; control
# characters the parser normalises; lone surrogates, which it replaces.
_MARKUP = re.compile(r"[\\`*_\[\]<>&~|\t\r\f\v\x00\ud800-\udfff]")
# Line starts that make lists or headings: "- ", "+ ", "1. ", "2) ", "# ", "===".
_BLOCK_START = re.compile(r"^(?:[-+=#]|\d+[.)])", re.MULTILINE)
_PLAIN_FORMATS: dict[str, str | None] = {
    "telegram_html": "HTML",
    "slack_mrkdwn": None,
    "plain": None,
}


def is_plain(text: str) -> bool:
    """Whether `text` has no Markdown at all, so it renders as itself in every format.

    Conservative: paragraphs separated by single blank lines, no line indented or with
    trailing whitespace (code blocks, hard breaks), none of the characters in `_MARKUP`.
    """
    return (
        _MARKUP.search(text) is None
        and "\n\n\n" not in text
        and _BLOCK_START.search(text) is None
        and text == text.strip()
        and all(line == line.strip() for line in text.split("\n"))
    )


def render_markdown(markdown: str, fmt: Format) -> Rendered:
    """`render` without the plain-text shortcut: always through the parser."""
    if fmt == "telegram_html":
        renderer = TelegramRenderer()
        html = renderer.document(markdown)
        return Rendered(html, "HTML", renderer.visible(html))
    if fmt == "slack_mrkdwn":
        tree = parse(markdown)
        slack = SlackRenderer().document(markdown, tree)
        return Rendered(slack, None, PlainRenderer().document(markdown, tree))
    if fmt == "plain":
        text = to_plain(markdown)
        return Rendered(text, None, text)
    if fmt in ("discord", "markdown"):
        return Rendered(markdown, None, markdown)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
