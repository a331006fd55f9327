"""Inline spans a cut must not fall inside: code spans and links (the splitter keeps whole
those that fit in a chunk)."""

from __future__ import annotations

import re
import sys
from bisect import bisect_right

_LINK = re.compile(r"!?\[[^\[\]\n]*\]\([^()\s]*(?:\s+\"[^\"\n]*\")?\)")
_BACKTICKS = re.compile(r"`+")

Span = tuple[int, int]


def inline_spans(text: str, start: int, hi: int, stop: int) -> list[Span]:
    """Code spans and links in ``text[start:stop]`` that start before ``hi``, sorted, those
    that overlap merged (a code span inside a link text).

    ``start`` must not be inside a code span: backticks are paired from there.
    """
    found: list[Span] = []
    opener: re.Match[str] | None = None
    for m in _BACKTICKS.finditer(text, start, stop):
        if opener is None:
            if m.start() >= hi:
                break  # spans starting past the window cannot be cut by this chunk
            opener = m
        elif len(m.group()) == len(opener.group()):
            found.append((opener.start(), m.end()))
            opener = None
    for m in _LINK.finditer(text, start, stop):
        if m.start() >= hi:
            break
        found.append(m.span())
    found.sort()
    spans: list[Span] = []
    for s, e in found:
        if spans and s < spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], e))
        else:
            spans.append((s, e))
    return spans


def inside(spans: list[Span], b: int) -> Span | None:
    """The span of sorted, disjoint ``spans`` that a break at ``b`` would cut, if any."""
    i = bisect_right(spans, (b, sys.maxsize)) - 1  # the last span starting at or before b
    if i >= 0 and spans[i][0] < b < spans[i][1]:
        return spans[i]
    return None
