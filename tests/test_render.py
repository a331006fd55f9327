"""Tests for picobot.text.render: Markdown → Telegram HTML, Slack mrkdwn, plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from picobot.text.render import (
    Rendered,
    is_plain,
    render,
    render_markdown,
    to_plain,
    to_slack_mrkdwn,
    to_telegram_html,
    visible_text_of_telegram_html,
)
from picobot.text.split import split_markdown
from tests.fakes.telegram_rules import parse_html

# -- checking Telegram HTML ------------------------------------------------------------------

_ALLOWED_ATTRS = {
    "b": set(),
    "i": set(),
    "s": set(),
    "code": {"class"},
    "pre": set(),
    "a": {"href"},
    "blockquote": set(),
}


class TelegramHTMLChecker(HTMLParser):
    """Collects every way ``html`` breaks the Bot API's HTML rules."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_ATTRS:
            self.errors.append(f"tag <{tag}>")
        elif any(name not in _ALLOWED_ATTRS[tag] for name, _ in attrs):
            self.errors.append(f"attributes {attrs} on <{tag}>")
        if tag == "a" and not re.match(r"(https?|tg|mailto):", dict(attrs).get("href") or ""):
            self.errors.append(f"href {attrs}")
        if tag == "code" and attrs and self.stack[-1:] != ["pre"]:
            self.errors.append("<code class> outside <pre>")
        if tag in self.stack and tag in ("a", "blockquote", "pre", "code"):
            self.errors.append(f"nested <{tag}>")
        if ("code" in self.stack or "pre" in self.stack) and not (
            tag == "code" and self.stack[-1:] == ["pre"]
        ):
            self.errors.append(f"<{tag}> inside code")
        if tag == "code" and "a" in self.stack:
            self.errors.append("<code> inside a link")
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_comment(self, data: str) -> None:
        self.errors.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.errors.append("declaration")


def assert_valid_telegram_html(html: str) -> None:
    checker = TelegramHTMLChecker()
    checker.feed(html)
    checker.close()
    assert not checker.errors, (checker.errors, html)
    assert not checker.stack, (checker.stack, html)
    # The same parsing rules as the real Bot API (tdlib's), with bare "&" rejected.
    visible, _ = parse_html(html, strict_amp=True)
    assert visible_text_of_telegram_html(html) == visible


# -- examples, per construct and format ------------------------------------------------------

CASES = [
    # (markdown, telegram html, slack mrkdwn, plain)
    ("**bold** and __also__", "<b>bold</b> and <b>also</b>", "*bold* and *also*", "bold and also"),
    ("*it* and _it_", "<i>it</i> and <i>it</i>", "_it_ and _it_", "it and it"),
    ("~~gone~~", "<s>gone</s>", "~gone~", "gone"),
    (
        "use `a < b && c`",
        "use <code>a &lt; b &amp;&amp; c</code>",
        "use `a &lt; b &amp;&amp; c`",
        "use a < b && c",
    ),
    (
        "```python\nif a < b:\n    pass\n```",
        '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>',
        "```\nif a &lt; b:\n    pass\n```",
        "if a < b:\n    pass",
    ),
    (
        "```\nplain & code\n```",
        "<pre>plain &amp; code</pre>",
        "```\nplain &amp; code\n```",
        "plain & code",
    ),
    ("    indented code", "<pre>indented code</pre>", "```\nindented code\n```", "indented code"),
    (
        "[docs](https://example.com/a?b=1&c=2)",
        '<a href="https://example.com/a?b=1&amp;c=2">docs</a>',
        "<https://example.com/a?b=1&amp;c=2|docs>",
        "docs (https://example.com/a?b=1&c=2)",
    ),
    (
        "[me](tg://user?id=42)",
        '<a href="tg://user?id=42">me</a>',
        "<tg://user?id=42|me>",
        "me (tg://user?id=42)",
    ),
    (
        "<https://x.org>",
        '<a href="https://x.org">https://x.org</a>',
        "<https://x.org>",
        "https://x.org",
    ),
    ("<a@b.co>", '<a href="mailto:a@b.co">a@b.co</a>', "<mailto:a@b.co>", "a@b.co"),
    ("[rel](/path) [ftp](ftp://h/f)", "rel ftp", "rel ftp", "rel (/path) ftp (ftp://h/f)"),
    (
        "[x](javascript:alert(1))",
        "[x](javascript:alert(1))",
        "[x](javascript:alert(1))",
        "[x](javascript:alert(1))",
    ),
    (
        "![a cat](https://img.example/cat.png)",
        '<a href="https://img.example/cat.png">a cat</a>',
        "<https://img.example/cat.png|a cat>",
        "a cat (https://img.example/cat.png)",
    ),
    (
        "> quoted\n> text",
        "<blockquote>quoted\ntext</blockquote>",
        "> quoted\n> text",
        "> quoted\n> text",
    ),
    (
        "> outer\n>\n> > inner",
        "<blockquote>outer\n\ninner</blockquote>",
        "> outer\n>\n> > inner",
        "> outer\n>\n> > inner",
    ),
    ("# Title\n\nBody", "<b>Title</b>\n\nBody", "*Title*\n\nBody", "Title\n\nBody"),
    ("## **Big** news", "<b>Big news</b>", "*Big news*", "Big news"),
    (
        "- a\n- b\n  - c\n- d",
        "• a\n• b\n  • c\n• d",
        "• a\n• b\n  • c\n• d",
        "• a\n• b\n  • c\n• d",
    ),
    ("1. one\n2. two", "1. one\n2. two", "1. one\n2. two", "1. one\n2. two"),
    ("3. three\n4. four", "3. three\n4. four", "3. three\n4. four", "3. three\n4. four"),
    ("- a\n\n- b", "• a\n\n• b", "• a\n\n• b", "• a\n\n• b"),
    (
        "- item\n\n  ```sh\n  make\n  ```",
        '• item\n\n<pre><code class="language-sh">make</code></pre>',
        "• item\n\n  ```\nmake\n  ```",
        "• item\n\nmake",
    ),
    ("a\n\n---\n\nb", "a\n\n———\n\nb", "a\n\n———\n\nb", "a\n\n———\n\nb"),
    (
        "| a | b |\n|---|--:|\n| 1 | 22 |",
        "<pre>a |  b\n--+---\n1 | 22</pre>",
        "```\na |  b\n--+---\n1 | 22\n```",
        "a |  b\n--+---\n1 | 22",
    ),
    (
        "<script>alert(1)</script> & <b>x</b>",
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;",
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;",
        "<script>alert(1)</script> & <b>x</b>",
    ),
    (
        "para one\n\n\n\npara two  \n\n",
        "para one\n\npara two",
        "para one\n\npara two",
        "para one\n\npara two",
    ),
    ("line one\nline two", "line one\nline two", "line one\nline two", "line one\nline two"),
    ("**unclosed bold", "**unclosed bold", "**unclosed bold", "**unclosed bold"),
    (
        "```py\nhalf a fence",
        '<pre><code class="language-py">half a fence</code></pre>',
        "```\nhalf a fence\n```",
        "half a fence",
    ),
    (
        "[`code` link](https://a.b)",
        '<a href="https://a.b">code link</a>',
        "<https://a.b|code link>",
        "code link (https://a.b)",
    ),
    (
        'say "hi" &amp; 5 &lt; 6',
        'say "hi" &amp; 5 &lt; 6',
        'say "hi" &amp; 5 &lt; 6',
        'say "hi" & 5 < 6',
    ),
]


@pytest.mark.parametrize(("markdown", "telegram", "slack", "plain"), CASES)
def test_constructs(markdown: str, telegram: str, slack: str, plain: str) -> None:
    assert to_telegram_html(markdown) == telegram
    assert_valid_telegram_html(telegram)
    assert to_slack_mrkdwn(markdown) == slack
    assert to_plain(markdown) == plain


def test_render_telegram_carries_parse_mode_and_visible_text() -> None:
    rendered = render("**a** < [b](https://b.c) & `c`", "telegram_html")
    assert rendered == Rendered(
        '<b>a</b> &lt; <a href="https://b.c">b</a> &amp; <code>c</code>', "HTML", "a < b & c"
    )


@pytest.mark.parametrize("fmt", ["discord", "markdown"])
def test_markdown_formats_pass_through_unchanged(fmt: str) -> None:
    md = "**bold** <b>raw</b>\n\n```py\nx\n```\n"
    assert render(md, fmt) == Rendered(md, None, md)  # type: ignore[arg-type]


def test_render_slack_and_plain() -> None:
    assert render("# Hi *there*", "slack_mrkdwn") == Rendered("*Hi _there_*", None, "Hi there")
    assert render("# Hi *there*", "plain") == Rendered("Hi there", None, "Hi there")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render("x", "html")  # type: ignore[arg-type]


def test_visible_text_strips_tags_and_decodes_entities() -> None:
    html = '<b>a &lt; b</b> &amp; <a href="https://x.y/?a=1&amp;b=2">&quot;q&quot;</a>&#33;&#x21;'
    assert visible_text_of_telegram_html(html) == 'a < b & "q"!!'
    assert visible_text_of_telegram_html('<pre><code class="language-c">x &gt; 1</code></pre>') == (
        "x > 1"
    )


def test_blank_markdown_renders_empty() -> None:
    for fmt in ("telegram_html", "slack_mrkdwn", "plain"):
        assert render("  \n\n ", fmt) == Rendered(
            "", "HTML" if fmt == "telegram_html" else None, ""
        )  # type: ignore[arg-type]


def test_markup_that_shows_nothing_renders_as_its_source() -> None:
    # A message must never be empty: an empty code block or link shows as typed.
    assert to_telegram_html("```py\n\n```") == "```py\n\n```"
    assert to_telegram_html("[](<>)") == "[](&lt;&gt;)"
    assert to_slack_mrkdwn("~~~") == "~~~"
    assert to_plain("```") == "```"


def test_every_chunk_of_a_split_code_block_renders_as_code() -> None:
    code = "\n".join(f"print({i} < {i + 1})" for i in range(200))
    chunks = split_markdown(f"Look:\n\n```python\n{code}\n```\nDone.", 500)
    assert len(chunks) > 3
    for chunk in chunks:
        html = to_telegram_html(chunk)
        assert_valid_telegram_html(html)
        assert '<pre><code class="language-python">' in html
        assert "```" not in html


# -- properties ------------------------------------------------------------------------------

_MD_TOKENS = [
    *["**", "*", "_", "__", "~~", "~", "`", "``", "```", "```py\n", "~~~\n", "\n", "\n\n"],
    *["> ", "> > ", "- ", "  - ", "1. ", "2) ", "# ", "## ", "---\n", "===", "    ", "\t"],
    *["[", "](", "]", ")", "![", "(", "http://x.y/a?b=1&c=2", "tg://user?id=1", "mailto:a@b.c"],
    *["javascript:x", "<http://a.b>", "<a@b.c>", "<", ">", "&", "&amp;", "&#60;", "&quot;"],
    *['"', "'", "<script>", "</b>", "<b>", "<br/>", "<!-- c -->", "|", "\n| a | b |\n|--|--|\n"],
    *["| 1 | 2 |\n", "text ", "word", "😀", "你好", "\\", "\\*", "***", "+ ", "\r\n"],
]
markdownish = st.lists(st.sampled_from(_MD_TOKENS), max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(markdownish, st.text(max_size=300)))
def test_telegram_html_is_always_valid(markdown: str) -> None:
    assert_valid_telegram_html(to_telegram_html(markdown))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefgh XYZ0123456789,.;:?!'\n", max_size=200))
def test_telegram_visible_text_keeps_plain_words(text: str) -> None:
    # Text without Markdown syntax shows up unchanged (up to whitespace), without markup.
    # ("00." starting a line is an ordered list, which renders its number as "0.".)
    assume(re.search(r"^\s*\d+\.", text, re.MULTILINE) is None)
    html = to_telegram_html(text)
    visible = visible_text_of_telegram_html(html)
    assert visible.split() == text.split()
    assert "<" not in visible and "&" not in visible


@settings(max_examples=300, deadline=None)
@given(st.one_of(markdownish, st.text(max_size=100)))
def test_non_blank_markdown_never_renders_blank(markdown: str) -> None:
    for fmt in ("telegram_html", "slack_mrkdwn", "plain"):
        rendered = render(markdown, fmt)  # type: ignore[arg-type]
        assert bool(rendered.visible.strip()) == bool(markdown.strip())
        assert bool(rendered.text.strip()) == bool(markdown.strip())


_SLACK_ESCAPE = re.compile(r"&(?!amp;|lt;|gt;)")
_SLACK_LINK = re.compile(r"<(?:https?|tg|mailto):[^<>|]*(?:\|[^<>]*)?>")
_SLACK_QUOTE = re.compile(r"^(?: *(?:• |\d+\. |>(?: |$)))+", re.MULTILINE)  # "• > " prefixes


@settings(max_examples=300, deadline=None)
@given(st.one_of(markdownish, st.text(max_size=300)))
def test_slack_output_escapes_everything_but_its_links(markdown: str) -> None:
    mrkdwn = to_slack_mrkdwn(markdown)
    assert not _SLACK_ESCAPE.search(mrkdwn)
    without_links = _SLACK_QUOTE.sub("", _SLACK_LINK.sub("", mrkdwn))
    assert "<" not in without_links and ">" not in without_links
    assert mrkdwn == mrkdwn.rstrip()


@settings(max_examples=300, deadline=None)
@given(st.one_of(markdownish, st.text(max_size=300)))
@example("**`**``")
def test_plain_has_no_formatting_markup(markdown: str) -> None:
    plain = to_plain(markdown)
    assert plain == plain.strip("\n").rstrip()
    # Markup the source did not contain never appears. (Literal backticks may become adjacent
    # once emphasis markers are stripped, as in "**`**``" -> "```": count them instead.)
    for marker in ("<b>", "<pre>"):
        if marker not in markdown:
            assert marker not in plain
    assert plain.count("`") <= markdown.count("`")


_DOCUMENT = """# Release notes

Some **bold text**, some *italic*, ~~struck~~ and `inline <code>` & more.

> A quote with a [link](https://example.com/path?x=1&y=2) and **bold
> across lines**.

1. First step
2. Second step with `code`
   - nested bullet
   - another one

```python
def greet(name: str) -> str:
    return f"<b>{name}</b> & co"
```

| Key | Value |
|-----|------:|
| a   | 1     |

![diagram](https://img.example/d.png) <https://auto.link> <script>x</script>

---
Last paragraph with __underscored bold__ and _italic_.
"""


def test_every_prefix_of_a_document_renders_valid_html() -> None:
    # A stream delivers half-written Markdown: unclosed bold, fences, links, tables.
    for end in range(len(_DOCUMENT) + 1):
        assert_valid_telegram_html(to_telegram_html(_DOCUMENT[:end]))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_DOCUMENT)), st.integers(0, len(_DOCUMENT)))
def test_any_slice_of_a_document_renders_valid_html(start: int, end: int) -> None:
    piece = _DOCUMENT[min(start, end) : max(start, end)]
    assert_valid_telegram_html(to_telegram_html(piece))
    to_slack_mrkdwn(piece)
    to_plain(piece)


def test_a_blank_code_span_is_not_an_empty_telegram_message() -> None:
    rendered = render("`\n`", "telegram_html")
    assert rendered.visible.strip() == "`\n`"


# -- the plain-text shortcut -------------------------------------------------------------------

_PLAINISH = st.one_of(
    st.text(  # mostly plain: the shortcut's side of `is_plain`
        alphabet=st.sampled_from(
            [*"abcXYZ019 \n.,;:?!'\"()/@%$^=+-#{}", "é", "中", "🙂", "\u00a0", "\u2028"]
        ),
        max_size=40,
    ),
    st.text(max_size=30),  # anything, odd Unicode included
)


@settings(max_examples=3000)
@given(_PLAINISH)
@example("Hello! Question #5: is 2+2 = 4? (yes)\nSecond line.\n\nNew paragraph.")
@example("1986. A year")
@example("a\n# b")
def test_plain_text_renders_as_itself_exactly_as_the_parser_would(text: str) -> None:
    if not is_plain(text):
        return
    for fmt in ("telegram_html", "slack_mrkdwn", "plain"):
        assert render(text, fmt) == render_markdown(text, fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Hello! Question #5: is 2+2 = 4? (yes)\nSecond line.\n\nNew paragraph.", True),
        ("Привет, мир 🙂", True),
        ("Here is **bold**", False),
        ("a_b", False),
        ("- item", False),
        ("# Title", False),
        ("x  \ny", False),  # a hard break
        ("    code", False),
        ("Tom & Jerry", False),
    ],
)
def test_the_shortcut_is_taken_for_plain_text_only(text: str, plain: bool) -> None:
    assert is_plain(text) is plain
