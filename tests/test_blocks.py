"""Tests for picobot.text.blocks: Markdown cut into parts that parse as they do in the whole.

The promise checked: rendering part by part (`to_plain`) gives exactly what rendering the whole
document at once gives, for tricky block mixes and for arbitrary Markdown-ish text.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from picobot.text.blocks import parts
from picobot.text.render import to_plain
from picobot.text.render_plain import PlainRenderer

SNIPPETS = [
    "A paragraph with **bold**, `code` and a [link](https://example.com).",
    "- a\n- b",
    "- a\n\n- b",
    "1. one\n2. two",
    "3) three",
    "10. ten",
    "1234567890. not a list",
    "+ plus",
    "* * *",
    "***",
    "---",
    "# Heading",
    "Setext\n===",
    "> quote\n> ```\n> code",
    "> a\n\n> b",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "    indented code\n\n    more",
    "```\ncode\n\nmore code\n```",
    "```python\nx = 1\n\n\ny\n```",
    "~~~~\n```\n\ninside\n~~~~",
    "````\n```\n\nnot closed by a shorter fence\n```\nstill\n````",
    "```\nopen to the end\n\nstill code",
    " ```\ncode\n\nx\n```",
    "- item\n  ```\n  x\n\nb",
    "\t```\nx\n\ny",
    "```\n```",
    "``` a`b\n\nc",
    "```   \nfence closed by spaces\n\ny\n```  \t",
    "[]()",
    "[ref]: https://example.com",
    "see [ref]",
    "\u00a0",
    " leading space",
    "<div>html</div>",
    "<!-- an HTML comment\n\n```\n-->",
    "<pre>\n```\n\n</pre>",
    "a\r\nb",
    "x\ry",
    "- ",
    "1.",
    "",
]
SEPARATORS = ["\n", "\n\n", "\n\n\n", "\n \n", "\n\t\n", " "]


def whole(markdown: str) -> str:
    """The reference: the document rendered at once."""
    return PlainRenderer().document(markdown)


@st.composite
def documents(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(st.sampled_from(SNIPPETS), max_size=8))
    out = ""
    for block in blocks:
        out += (draw(st.sampled_from(SEPARATORS)) if out else "") + block
    return out


@settings(max_examples=1500, deadline=None)
@given(documents())
@example("- item\n  ```\n  x\n\nb\n\n```\ncode\n\nmore\n```")
@example("para\n\u00a0\nfoo")
def test_parts_render_as_the_whole_document(markdown: str) -> None:
    assert "".join(parts(markdown)) == markdown
    assert to_plain(markdown) == whole(markdown)


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="`~-*+>#|1.) \n\tab[]():\\", max_size=300))
def test_arbitrary_markdownish_text_renders_as_the_whole(markdown: str) -> None:
    assert "".join(parts(markdown)) == markdown
    assert to_plain(markdown) == whole(markdown)


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("a\n\nb", ["a\n\n", "b"]),
        ("a\n\n- b", ["a\n\n- b"]),  # a list item after a blank line may continue a list
        ("```\na\n\nb\n```\n\nc", ["```\na\n\nb\n```\n\n", "c"]),  # no cut inside a fence
        ("a\n\n  b", ["a\n\n  b"]),  # indented: may continue a list item
        ("[x]: /u\n\nb", ["[x]: /u\n\nb"]),  # a reference definition reaches everything
    ],
)
def test_where_it_cuts(markdown: str, expected: list[str]) -> None:
    assert parts(markdown) == expected


def test_a_long_reply_is_cut_into_paragraphs() -> None:
    reply = "\n\n".join(f"Paragraph {i} with *some* text." for i in range(100))
    assert len(parts(reply)) == 100


@settings(max_examples=300, deadline=None)
@given(documents(), st.integers(min_value=1, max_value=40))
def test_a_growing_text_is_cut_as_if_seen_whole(markdown: str, step: int) -> None:
    """Each tick's text extends the last one: the scan resumes, with the same result."""
    for end in [*range(0, len(markdown), step), len(markdown)]:
        text = markdown[:end]
        assert to_plain(text) == whole(text)
