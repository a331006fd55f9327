"""Where Markdown can be cut so that each part parses exactly as it does in the whole text.

A streamed reply is rendered again on every tick while it grows; rendering the parts of it that
are settled once each (see `render.to_plain`) keeps that linear in the reply's length.

A cut goes before a line in column 0 that follows a blank line and does not start a list item
(which would continue a loose list). A blank line and a line in column 0 end every paragraph,
list, quote, table and indented code block, and every fence inside them; only a fenced code
block of the top level can go on, and its fence lines are then in column 0 (closing ones may
be indented up to 3 columns): those are tracked. No cuts at all when the text may define a
link reference (it reaches the whole document), and none after a fence line indented 1-3
columns outside a fence (it may open a top-level fence or one inside a list).
"""

from __future__ import annotations

import re
from itertools import pairwise

__all__ = ["parts"]

_FENCE = re.compile(r"([ \t]*)(`{3,}|~{3,})(.*)")
_LIST_ITEM = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")


def parts(markdown: str) -> list[str]:
    """`markdown` cut where no block spans the cut; ``"".join(parts(m)) == m``."""
    if "]:" in markdown or "\r" in markdown:  # maybe a link reference definition; "\r" breaks
        return [markdown]  # lines where str.split("\n") does not: no cuts
    cuts = [0]
    fence: tuple[str, int] | None = None  # the open top-level fence: its character and length
    blank = False  # the line before was blank
    offset = 0
    for line in markdown.split("\n"):
        start, offset = offset, offset + len(line) + 1
        if not line.strip(" \t"):
            blank = True
            continue
        after_blank, blank = blank, False
        match = _FENCE.fullmatch(line)
        indent = len(match.group(1).expandtabs(4)) if match else 0
        if fence is not None:
            if match and indent < 4 and _closes(fence, match):
                fence = None
            continue
        if match and indent == 0 and _opens(match):
            fence = match.group(2)[0], len(match.group(2))
        elif match and indent < 4 and _opens(match):
            break  # a fence whose container cannot be told without parsing: no more cuts
        if after_blank and start > 0 and line[0] not in " \t" and not _LIST_ITEM.match(line):
            cuts.append(start)
    cuts.append(len(markdown))
    return [markdown[a:b] for a, b in pairwise(cuts) if b > a]


def _opens(match: re.Match[str]) -> bool:
    return not (match.group(2)[0] == "`" and "`" in match.group(3))


def _closes(fence: tuple[str, int], match: re.Match[str]) -> bool:
    run = match.group(2)
    return run[0] == fence[0] and len(run) >= fence[1] and not match.group(3).strip(" \t")
