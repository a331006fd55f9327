"""Tests for picobot.text.syntax: pyromark's events as the tree the renderers walk."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from picobot.text import syntax
from picobot.text.render import render, to_plain, to_slack_mrkdwn, to_telegram_html
from picobot.text.syntax import Node, normalize_link, parse
from tests.test_render import _DOCUMENT, _MD_TOKENS, assert_valid_telegram_html


def shape(node: Node) -> Any:
    """The tree as nested tuples: kinds, with the content of leaves."""
    if not node.children:
        return (node.kind, node.content) if node.content else node.kind
    kind = f"{node.kind}(hidden)" if node.hidden else node.kind
    return (kind, *(shape(child) for child in node.children))


@pytest.mark.parametrize(
    ("markdown", "tree"),
    [
        ("- a\n- *b*", ("bullet_list", ("list_item", ("paragraph(hidden)", ("text", "a"))),
                        ("list_item", ("paragraph(hidden)", ("em", ("text", "b")))))),
        ("- a\n\n- b", ("bullet_list", ("list_item", ("paragraph", ("text", "a"))),
                        ("list_item", ("paragraph", ("text", "b"))))),
        ("- a\n  - b\n\n  c", ("bullet_list", ("list_item", ("paragraph", ("text", "a")),
                               ("bullet_list", ("list_item", ("paragraph(hidden)",
                                                              ("text", "b")))),
                               ("paragraph", ("text", "c"))))),
        ("- # h\n  x", ("bullet_list", ("list_item", ("heading", ("text", "h")),
                                        ("paragraph(hidden)", ("text", "x"))))),
        # Raw HTML is text, and the lines after an HTML block's first line are Markdown.
        ("<div>\n*x*\n</div>", ("paragraph", ("text", "<div>"), "softbreak",
                                 ("em", ("text", "x")), "softbreak", ("text", "</div>"))),
        ("a\n  <script>\nb", ("paragraph", ("text", "a"), "softbreak", ("text", "<script>"),
                              "softbreak", ("text", "b"))),
        ("a `x\n<div>\ny`", ("paragraph", ("text", "a "), ("code_inline", "x <div> y"))),
        ("a <b>c</b>", ("paragraph", ("text", "a "), ("text", "<b>"), ("text", "c"),
                        ("text", "</b>"))),
        ("[**x**](javascript:y)", ("paragraph", ("text", "["), ("strong", ("text", "x")),
                                   ("text", "](javascript:y)"))),
        ("a ~b *c*~ ~~d~~", ("paragraph", ("text", "a "), ("text", "~"), ("text", "b "),
                             ("em", ("text", "c")), ("text", "~"), ("text", " "),
                             ("s", ("text", "d")))),
        ("<javascript:y>", ("paragraph", ("text", "<"), ("text", "javascript:y"), ("text", ">"))),
        ("![i](data:image/png;base64,AA)", ("paragraph", ("image", ("text", "i")))),
        ("a\x00b\r\nc", ("paragraph", ("text", "a\ufffdb"), "softbreak", ("text", "c"))),
        ("```\nx\r\ny\r\n```", ("fence", "x\ny\n")),
    ],
)  # fmt: skip
def test_tree(markdown: str, tree: Any) -> None:
    assert shape(parse(markdown)) == ("document", tree)


def test_html_blocks_showing_up_again_and_again_are_shown_as_typed_in_the_end() -> None:
    # Each round of marking finds new HTML blocks in deeper quotes; after four, they are text.
    quotes = "".join(f"{'> ' * depth}<p>\n" for depth in range(1, 8))
    html = to_telegram_html(quotes)
    assert html.count("&lt;p&gt;") == 7
    assert "&gt; &gt; &lt;p&gt;" in html  # the last blocks, as typed
    assert_valid_telegram_html(html)


@pytest.mark.parametrize(
    "markdown",
    ["- " * 400 + "x", "1. " * 400 + "x", "> " * 400 + "x", "*" * 2000 + "x" + "*" * 2000],
)
def test_deep_nesting_is_cut_short_not_a_recursion_error(markdown: str) -> None:
    def depth(node: Node) -> int:
        return 1 + max(map(depth, node.children), default=0)

    assert depth(parse(markdown)) <= 23  # containers, then the text and its paragraph
    _renders_everywhere(markdown)
    assert "x" in to_plain(markdown)


def test_nodes_carry_what_the_renderers_need() -> None:
    doc = parse(
        "3. x\n\n```py  extra\nc\n```\n\n| a | b | c |\n|:-|:-:|-|\n\n[l](<https://ä.org/a b>)"
    )
    numbered, fence, table, paragraph = doc.children
    assert (numbered.kind, numbered.number) == ("ordered_list", 3)
    assert (fence.info, fence.content) == ("py  extra", "c\n")
    assert table.aligns == ("left", "center", "none")
    assert paragraph.children[0].content == "https://xn--4ca.org/a%20b"
    assert parse("<a@b.co>").children[0].children[0].content == "mailto:a@b.co"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://example.com/a?b=1&c=2#f", "https://example.com/a?b=1&c=2#f"),
        ("tg://user?id=42", "tg://user?id=42"),
        ("https://x.y/a%20b", "https://x.y/a%20b"),  # an escape is kept
        ("https://x.y/100%", "https://x.y/100%25"),
        ("https://x.y/a b/[c]{d}|e^\"`<>\\", "https://x.y/a%20b/%5Bc%5D%7Bd%7D%7Ce%5E%22%60%3C%3E%5C"),
        ("http://ä.com/é?q=ü", "http://xn--4ca.com/%C3%A9?q=%C3%BC"),
        ("https://u:p@Bücher.de:8080/", "https://u:p@xn--bcher-kva.de:8080/"),
        ("mailto:ä@x.y", "mailto:%C3%A4@x.y"),
        ("http://[::1", "http://%5B::1"),
    ],
)  # fmt: skip
def test_link_urls_are_percent_encoded_as_commonmark_renders_them(url: str, normal: str) -> None:
    assert normalize_link(url) == normal


def test_nul_and_lone_surrogates_become_replacement_characters() -> None:
    assert to_plain("a\x00b") == "a\ufffdb"
    # JSON can carry a lone surrogate; pyromark takes only UTF-8: the Markdown around it stays.
    html = to_telegram_html("**bold** \ud800 and `code`")
    assert html == "<b>bold</b> \ufffd and <code>code</code>"
    assert_valid_telegram_html(html)


class PanicException(BaseException):
    """What pyo3 raises for a Rust panic (not an `Exception`)."""


def _failing(error: BaseException) -> Callable[[str], Iterator[Any]]:
    def events(markdown: str) -> Iterator[Any]:
        yield {"Start": "Paragraph"}
        raise error

    return events


@pytest.mark.parametrize("error", [PanicException("boom"), ValueError("odd")])
def test_a_parser_failure_renders_the_text_as_it_is(
    error: BaseException, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(syntax, "_events", lambda: _failing(error))
    with caplog.at_level(logging.WARNING, logger="picobot.text.syntax"):
        rendered = render("**secret** <b>\n\nsecond", "telegram_html")
    assert rendered.text == "**secret** &lt;b&gt;\n\nsecond"
    assert rendered.visible == "**secret** <b>\n\nsecond"
    assert [r.getMessage() for r in caplog.records] == [
        f"the Markdown parser failed ({type(error).__name__}): rendered as plain text"
    ]  # the message's text is not logged


def test_interrupts_are_not_taken_for_parser_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syntax, "_events", lambda: _failing(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        parse("x")


# -- fuzzing: whatever comes, every format renders and Telegram's HTML is well-formed ----------

_ODD = st.text(st.characters(exclude_categories=()), max_size=80)  # surrogates, controls, NUL
_TOKENS = st.sampled_from(
    [*_MD_TOKENS, "\x00", "\x0b", "\x0c", "\r", "\u2028", "\ud800", "\udfff", "&#0;", "<!--"]
)
_MIXED = st.lists(st.one_of(_TOKENS, _ODD), max_size=40).map("".join)


def _renders_everywhere(markdown: str) -> None:
    assert_valid_telegram_html(to_telegram_html(markdown))
    to_slack_mrkdwn(markdown)
    to_plain(markdown)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_MIXED, _ODD))
@example("[`\x00")
@example("```\x00\n\ud800")
def test_any_text_renders(markdown: str) -> None:
    _renders_everywhere(markdown)


_REPLY = (
    "Sure! Here's the **plan** for `deploy.sh`:\n\n1. Build with [make](https://x.y/?a=1&b=2)\n"
    "2. Run:\n   ```bash\n   ./deploy.sh --env=prod\n   ```\n\n| step | time |\n|:--|--:|\n"
    "| build | 2 m |\n\n> Note: ~~never~~ *always* check <the logs>.\n\n![graph](https://g.png)"
)


@pytest.mark.parametrize("reply", [_REPLY, _DOCUMENT])
def test_every_prefix_of_a_streamed_reply_renders(reply: str) -> None:
    for end in range(len(reply) + 1):
        _renders_everywhere(reply[:end])
