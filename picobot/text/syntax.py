"""Markdown → a small syntax tree: pulldown-cmark's events (through pyromark) as nested nodes.

CommonMark with strikethrough and tables. The node kinds are the ones the renderers walk:
blocks ``paragraph``, ``heading``, ``bullet_list``, ``ordered_list``, ``list_item``,
``blockquote``, ``fence``, ``code_block``, ``html_block``, ``hr``, ``table``, ``tr``, ``td``;
inline ``text``, ``code_inline``, ``softbreak``, ``hardbreak``, ``strong``, ``em``, ``s``,
``link``, ``image``. As with markdown-it before (raw HTML off): raw HTML is text, so
"<script>" in the model's text stays visible text, and the lines after a tag that starts an
HTML block are Markdown; a "javascript:" link and "~x~" (one tilde each side) are text too.
Parsing never fails: input pyromark refuses (a lone surrogate) or a parser panic gives one
paragraph of the text as it is; nesting deeper than 20 is flattened.
"""

from __future__ import annotations

import functools
import logging
import re
import string
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)


class Node:
    """A node of the tree. ``content``: the text of ``text``, ``code_inline``, code blocks and
    ``html_block``, the URL of ``link`` and ``image``. ``info``: a fence's info string.
    ``number``: an ordered list's start. ``aligns``: a table's column alignments.
    ``hidden``: a paragraph of a tight list item (no blank lines around it). While the tree is
    built, a ``literal`` node (replaced by its text, ``info`` + children + ``content``, at its
    end) holds markup shown as typed."""

    __slots__ = ("aligns", "children", "content", "hidden", "info", "kind", "number")

    def __init__(self, kind: str, content: str = "") -> None:
        self.kind = kind
        self.content = content
        self.children: list[Node] = []
        self.info = ""
        self.number = 1
        self.hidden = False
        self.aligns: tuple[str, ...] = ()


@functools.cache
def _parser() -> tuple[Any, Any]:
    """pyromark and its options, imported on first use: a web-chat-only daemon never parses."""
    import pyromark

    # Subscript only to tell "~x~" from "~~x~~": strikethrough takes two tildes, as in
    # markdown-it ("~5 to ~10~ish" is no strikethrough).
    o = pyromark.Options
    return pyromark, o.ENABLE_TABLES | o.ENABLE_STRIKETHROUGH | o.ENABLE_SUBSCRIPT


def _events() -> Callable[[str], Iterator[Any]]:
    pyromark, options = _parser()
    return functools.partial(pyromark.events, options=options)


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """`text` with each lone surrogate (JSON can carry one; no platform takes it) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


# Event and tag names → node kinds (one name for each, so one table). "InlineHtml" is text.
_KINDS = {
    **{"Text": "text", "Code": "code_inline", "InlineHtml": "text", "Rule": "hr"},
    **{"SoftBreak": "softbreak", "HardBreak": "hardbreak"},
    **{"Emphasis": "em", "Strong": "strong", "Strikethrough": "s"},
    **{"Paragraph": "paragraph", "Heading": "heading", "BlockQuote": "blockquote"},
    **{"Item": "list_item", "HtmlBlock": "html_block"},
    **{"TableHead": "tr", "TableRow": "tr", "TableCell": "td"},
}
_INLINE = frozenset(
    (
        "text",
        "code_inline",
        "softbreak",
        "hardbreak",
        "em",
        "strong",
        "s",
        "link",
        "image",
        "literal",
    )
)
_CODE = ("fence", "code_block")
# Containers nested deeper are left out, their content kept (the renderers recurse; markdown-it
# stopped at 20 too).
_MAX_DEPTH = 20


def parse(markdown: str) -> Node:
    """The document's tree (its children are the blocks)."""
    # What CommonMark asks of input before parsing (markdown-it did it; pulldown-cmark keeps
    # NUL as is and "\r" inside code): NUL → U+FFFD, every line ending → "\n".
    markdown = markdown.replace("\x00", "\ufffd")
    if "\r" in markdown:
        markdown = markdown.replace("\r\n", "\n").replace("\r", "\n")
    try:
        tree, html = _tree(_events()(markdown))
        if html and _MARK not in markdown:  # (a text with the mark keeps its HTML blocks)
            for _ in range(_HTML_ROUNDS):
                markdown = _mark_html_blocks(markdown)
                tree, html = _tree(_events()(markdown))
                if not html:
                    break
            _unmark(tree)
        return tree
    except UnicodeEncodeError:  # a lone surrogate (JSON can carry one): not UTF-8
        return parse(without_surrogates(markdown))
    except BaseException as e:  # pyo3 turns a Rust panic into PanicException (BaseException)
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise
        log.warning("the Markdown parser failed (%s): rendered as plain text", type(e).__name__)
        return _as_text(markdown)


# markdown-it read raw HTML as text: a line starting an HTML block here was a paragraph's
# line there (and the lines after it, Markdown). So a mark goes before the "<" starting each
# HTML block, which makes its line text, and the text is parsed again (again if that shows
# new HTML blocks, up to this many times; then the rest shows as it is, as text). The mark, a
# noncharacter, is then removed from the tree.
_HTML_ROUNDS = 4
_MARK = "\ufdd0"


def _mark_html_blocks(markdown: str) -> str:
    pyromark, options = _parser()
    source = markdown.encode()
    out, done, starting = [], 0, False
    for event, span in pyromark.events_with_range(markdown, options=options):
        if event == {"Start": "HtmlBlock"}:
            starting = True
        elif starting and type(event) is dict and "Html" in event:  # the block's first line
            at = span["start"] + max(0, event["Html"].find("<"))
            out += [source[done:at], _MARK.encode()]
            done, starting = at, False
    return b"".join([*out, source[done:]]).decode()


def _unmark(node: Node) -> None:
    node.content = node.content.replace(_MARK, "")
    for child in node.children:
        _unmark(child)
    node.children = [c for c in node.children if c.kind != "text" or c.content]


def _as_text(markdown: str) -> Node:
    paragraph = Node("paragraph")
    paragraph.children.append(Node("text", markdown))
    root = Node("document")
    root.children.append(paragraph)
    return root


def _tree(events: Iterator[Any]) -> tuple[Node, bool]:
    """The tree, and whether it has HTML blocks."""
    root = top = Node("document")
    stack = [root]
    html = False
    skipped = 0  # containers left out, nested too deep
    for event in events:
        opens = False
        if type(event) is str:  # "SoftBreak", "HardBreak", "Rule"
            node = Node(_KINDS.get(event, "text"))
        else:
            ((name, value),) = event.items()
            if name == "Start":
                if len(stack) > _MAX_DEPTH:
                    skipped += 1
                    continue
                node, opens = _start(value), True
            elif name == "End":
                if skipped:
                    skipped -= 1
                    continue
                if top.hidden:  # a tight item's paragraph ends with the item
                    stack.pop()
                node = stack.pop()
                top = stack[-1]
                if node.kind == "literal":  # markup shown as typed: its marks are text
                    text = [Node("text", node.info), *node.children, Node("text", node.content)]
                    top.children[-1:] = text
                continue
            elif top.kind == "html_block":  # its lines
                top.content += str(value)
                html = True
                continue
            elif name == "Text" and top.kind in _CODE:
                top.content += value
                continue
            else:  # "Text", "Code", "InlineHtml"
                node = Node(_KINDS.get(name, "text"), str(value))
        if node.kind in _INLINE:
            if top.kind == "list_item":  # a tight list item's text: a hidden paragraph
                paragraph = Node("paragraph")
                paragraph.hidden = True
                top.children.append(paragraph)
                stack.append(paragraph)
                top = paragraph
        elif top.hidden:  # a block after it ends a tight item's paragraph
            stack.pop()
            top = stack[-1]
        top.children.append(node)
        if opens:
            stack.append(node)
            top = node
    return root, html


def _start(tag: Any) -> Node:
    if type(tag) is str:
        if tag == "Subscript":  # "~x~": the tildes are text
            node = Node("literal", "~")
            node.info = "~"
            return node
        return Node(_KINDS.get(tag, "paragraph"))
    ((name, value),) = tag.items()
    if name in ("Link", "Image"):
        url = value["dest_url"]
        kind = value["link_type"]
        url = normalize_link("mailto:" + url if kind == "Email" else url)
        if _valid_link(url):
            return Node(name.lower(), url)
        # As markdown-it did: a "javascript:" (and the like) link is no link but its text.
        if kind == "Inline":
            opening, closing = "[", f"]({value['dest_url']})"
        else:
            opening, closing = ("<", ">") if kind in ("Autolink", "Email") else ("[", "]")
        node = Node("literal", closing)
        node.info = "!" * (name == "Image") + opening
        return node
    if name == "List":
        node = Node("bullet_list" if value is None else "ordered_list")
        node.number = 1 if value is None else int(value)
        return node
    if name == "CodeBlock":
        if value == "Indented":
            return Node("code_block")
        node = Node("fence")
        node.info = str(value["Fenced"])
        return node
    if name == "Table":
        node = Node("table")
        node.aligns = tuple(str(a).lower() for a in value)
        return node
    return Node(_KINDS.get(name, "paragraph"))


# Percent-encoding as CommonMark's reference renderer does (and markdown-it did): what a URL
# may hold as it is, and "%" starting an escape.
_URL_SAFE = ";/?:@&=+$,-_.!~*'()#%"
# What a URL may hold as it is, "%" aside (the quick test: stripping them leaves nothing),
# and a URL that needs no encoding: those, and "%" only as an escape.
_URL_PLAIN = string.ascii_letters + string.digits + _URL_SAFE.replace("%", "")
_PLAIN_URL = re.compile(f"(?:[{re.escape(_URL_PLAIN)}]|%[0-9A-Fa-f]{{2}})*\\Z")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


_BAD_SCHEME = re.compile(r"(?:vbscript|javascript|file|data):")
_GOOD_DATA = re.compile(r"data:image/(?:gif|png|jpeg|webp);")


def _valid_link(url: str) -> bool:
    url = url.strip().lower()
    return not _BAD_SCHEME.match(url) or bool(_GOOD_DATA.match(url))


def normalize_link(url: str) -> str:
    """The URL with what it may not hold percent-encoded, and an http(s) URL's international
    host in punycode."""
    if not url.strip(_URL_PLAIN) or _PLAIN_URL.match(url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1": no host to convert
        parts = None
    if parts and parts.scheme.lower() in ("http", "https") and not parts.netloc.isascii():
        user, at, host = parts.netloc.rpartition("@")
        host, colon, port = host.partition(":")
        host = ".".join(_punycode(label) for label in host.split("."))
        url = url.replace(parts.netloc, user + at + host + colon + port, 1)
    return quote(_LONE_PERCENT.sub("%25", url), safe=_URL_SAFE)


def _punycode(label: str) -> str:
    return label if label.isascii() else "xn--" + label.lower().encode("punycode").decode("ascii")
