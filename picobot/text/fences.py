"""Fenced code blocks, recognised line by line, more eagerly than CommonMark (to the splitter,
a false positive costs a spare close/reopen pair, a false negative breaks a code block): any
indentation, then 3+ backticks (info string without backticks) or 3+ tildes, closed by a line
of the same character at least as long. Not recognised: fences inside block quotes."""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from picobot.text.units import Measure

FENCE_LINE = re.compile(r"^([ \t]*)(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)


class Fence(NamedTuple):
    start: int  # start of the opening line, indentation included
    body_start: int  # just after the opening line's newline
    content_end: int  # just after the body's last non-whitespace character (>= body_start)
    end: int  # end of the closing line, before trailing whitespace; len(text) if unclosed
    closed: bool
    reopen: str  # the opening line + "\n", repeated atop a chunk that starts inside
    close: str  # "\n" + a closing line, added to a chunk that stops inside
    size: int  # measure of the whole block as a chunk of its own
    overhead: int  # measure of reopen + close, and of the longest closing line


def scan_fences(text: str, measure: Measure) -> list[Fence]:
    """All fenced blocks of ``text`` in order; a block left open runs to the end."""
    pairs: list[tuple[re.Match[str], re.Match[str] | None]] = []
    opener: re.Match[str] | None = None
    for m in FENCE_LINE.finditer(text):
        run, rest = m.group(2), m.group(3)
        if opener is None:
            if run[0] == "`" and "`" in rest:
                continue  # CommonMark: a backtick fence's info string has no backticks
            opener = m
        elif run[0] == opener.group(2)[0] and len(run) >= len(opener.group(2)) and not rest.strip():
            pairs.append((opener, m))
            opener = None
    if opener is not None:
        pairs.append((opener, None))
    if not pairs:
        return []  # most replies: no cache to build

    cost = functools.cache(measure)  # fence lines repeat a lot: measure each once
    n = len(text)
    fences = []
    for opener, closer in pairs:
        start = opener.start()
        body_start = min(opener.end() + 1, n)
        closer_start = closer.start() if closer else n
        end = closer_start + len(closer.group().rstrip()) if closer else n
        content_end = body_start + len(text[body_start:closer_start].rstrip())
        reopen = text[start : opener.end()].rstrip() + "\n"
        close = "\n" + opener.group(1) + opener.group(2)
        closer_cost = cost("\n" + text[closer_start:end]) if closer else 0
        size = measure(text[start:end].rstrip()) + (0 if closer else cost(close))
        overhead = cost(reopen) + max(cost(close), closer_cost)
        closed = closer is not None
        fences.append(
            Fence(start, body_start, content_end, end, closed, reopen, close, size, overhead)
        )
    return fences


def is_fence_line(line: str, fence: Fence | None) -> bool:
    """Whether ``line`` opens a fence (outside code) or closes ``fence`` (inside it)."""
    m = FENCE_LINE.fullmatch(line.rstrip())
    if m is None:
        return False
    run, rest = m.group(2), m.group(3)
    if fence is None:
        return not (run[0] == "`" and "`" in rest)
    closing = fence.close.lstrip("\n \t")
    return run[0] == closing[0] and len(run) >= len(closing) and not rest.strip()
