"""Where Markdown can be cut so that each part parses exactly as it does in the whole text.

A streamed reply is rendered again on every tick while it grows; rendering the parts of it that
are settled once each (see `render.to_plain`) keeps that linear in the reply's length.

A cut goes before a line in column 0 that follows a blank line and does not start a list item
(which would continue a loose list). A blank line and a line in column 0 end every paragraph,
list, quote, table and indented code block, and every fence inside them; only a fenced code
block of the top level can go on, and its fence lines are then in column 0 (closing ones may
be indented up to 3 columns): those are tracked. No cuts at all when the text may define a
link reference (it reaches the whole document), and none after a fence line indented 1-3
columns outside a fence (it may open a top-level fence or one inside a list), nor after a line
that may start a block of raw HTML (the parser takes the lines up to a blank one, or to the
end of a comment, as HTML, fence lines included).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

__all__ = ["parts"]

_FENCE = re.compile(r"([ \t]*)(`{3,}|~{3,})(.*)")
_LIST_ITEM = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
_HTML = re.compile(r" {0,3}<[A-Za-z/!?]")


def parts(markdown: str) -> list[str]:
    """`markdown` cut where no block spans the cut; ``"".join(parts(m)) == m``."""
    if "]:" in markdown or "\r" in markdown:  # maybe a link reference definition; "\r" breaks
        return [markdown]  # lines where str.split("\n") does not: no cuts
    scan = _resume(markdown)
    end = markdown.rfind("\n") + 1  # the complete lines end here
    if end > len(scan.text):
        scan.feed(markdown, len(scan.text), end)
        scan.text = markdown[:end]
        _RECENT.append(scan.copy())
    scan.feed(markdown, end, len(markdown))  # the line still being written
    cuts = [*scan.cuts, len(markdown)]
    return [markdown[a:b] for a, b in pairwise(cuts) if b > a]


@dataclass(slots=True)
class _Scan:
    """What a scan of `text` (whole lines) found: its cuts, and the state at its end."""

    text: str = ""
    cuts: list[int] = field(default_factory=lambda: [0])
    fence: tuple[str, int] | None = None  # the open top-level fence: its character and length
    blank: bool = False  # the last line was blank
    stopped: bool = False  # a fence line of unknown container was met: no more cuts

    def copy(self) -> _Scan:
        return _Scan(self.text, self.cuts.copy(), self.fence, self.blank, self.stopped)

    def feed(self, markdown: str, start: int, end: int) -> None:
        """Scan the lines of ``markdown[start:end]`` (`start` is the start of a line)."""
        if self.stopped or start >= end:
            return
        region = markdown[start:end]
        offset = start
        for line in region.removesuffix("\n").split("\n"):
            start, offset = offset, offset + len(line) + 1
            if not line.strip(" \t"):
                self.blank = True
                continue
            after_blank, self.blank = self.blank, False
            match = _FENCE.fullmatch(line)
            indent = len(match.group(1).expandtabs(4)) if match else 0
            if self.fence is not None:
                if match and indent < 4 and _closes(self.fence, match):
                    self.fence = None
                continue
            if match and indent == 0 and _opens(match):
                self.fence = match.group(2)[0], len(match.group(2))
            elif (match and indent < 4 and _opens(match)) or _HTML.match(line):
                self.stopped = True  # a fence whose container only a parser can tell, or HTML
                return
            if after_blank and start > 0 and line[0] not in " \t" and not _LIST_ITEM.match(line):
                self.cuts.append(start)


# A streamed reply is cut again on every tick, each time a little longer: the scans of the
# latest texts are kept, and a text that extends one of them is scanned from where it ended.
_RECENT: deque[_Scan] = deque(maxlen=8)


def _resume(markdown: str) -> _Scan:
    for scan in reversed(_RECENT):
        if markdown.startswith(scan.text):
            return scan.copy()
    return _Scan()


def _opens(match: re.Match[str]) -> bool:
    return not (match.group(2)[0] == "`" and "`" in match.group(3))


def _closes(fence: tuple[str, int], match: re.Match[str]) -> bool:
    run = match.group(2)
    # Only spaces may follow (pulldown-cmark does not close a fence on "```\t").
    return run[0] == fence[0] and len(run) >= fence[1] and not match.group(3).strip(" ")
