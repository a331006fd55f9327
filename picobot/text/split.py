"""Fence-aware splitting of Markdown into chunks that fit a platform's message limit.

The promise: a fenced code block is never broken. A block that fits in one message moves whole
to the next message; a bigger one is cut at line breaks, the chunk that stops inside it closes
the fence and the next chunk reopens it with the same opening line (info string included), so
every chunk renders on its own. A fence left open at the end is closed in its last chunk.

Break points, best first: paragraph > line > sentence end > word > hard cut. The latest break
of the best class wins, but a paragraph, line or sentence break must leave the chunk at least
half full, else a lower class that fills it better wins; inside code any line break beats
cutting a line. Hard cuts keep ``"\r\n"``, surrogate pairs and (cheaply detected) grapheme
clusters whole; inline code spans and links that fit are not cut; a cut in the middle of a
line never leaves either half starting with a fence-like run.

Everything works on the Markdown *source*: callers split with the platform limit, render each
chunk, and split again the rare chunk whose rendering is still too long.

Text preservation: :func:`split_pieces` returns pieces ``p0 … pk`` of ``text`` such that

* ``p.text == p.reopen + text[p.start:p.end] + p.close``;
* ``text[:p0.start]``, each ``text[pi.end:pi+1.start]`` and ``text[pk.end:]`` are whitespace;
* ``p.reopen`` is ``""`` or the opening line (plus ``"\n"``) of the fence ``p.start`` is in;
  ``p.close`` is ``""`` or ``"\n"`` plus a closing fence line.

So dropping the synthetic fence lines and joining gives back the text with only the whitespace
at the break points removed (leading blank lines, trailing whitespace, the spaces or newlines
where a chunk was cut); indentation at the start of a line is kept.

Fences are recognised as `picobot.text.fences` says. Two limits, far from real replies: a
fence whose opening line leaves no room to reopen it is treated as text, and a run of
backticks or tildes longer than about a quarter of the limit, or a code line ending in one that
does not fit beside the reopened opening line, may be cut into a fence-like line.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import NamedTuple

from picobot.text.fences import Fence, is_fence_line, scan_fences
from picobot.text.spans import inline_spans, inside
from picobot.text.units import Measure, codepoints, joins, utf16_units

__all__ = [
    "MIN_LIMIT",
    "Measure",
    "Piece",
    "codepoints",
    "split_markdown",
    "split_pieces",
    "utf16_units",
]


MIN_LIMIT = 32
"""Smallest accepted limit: a chunk cut inside a code block must still hold the reopened and
the closing fence lines plus some code."""

_MIN_FILL = 0.5  # paragraph/line/sentence breaks must leave the chunk at least this full
_MIN_FENCE_BODY = 8  # room for code a fence must leave in a chunk to be splittable
_MAX_BACKOFF = 32  # how far back a hard cut looks for a grapheme boundary or a clean cut

_WS_RUN = re.compile(r"\s*")
_INDENT = re.compile(r"[ \t]*")
_BLANK_AHEAD = re.compile(r"[^\S\n]*(?:\n|\Z)")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*(?=\s)|[。！？][」』”’）]*")
_RUNS = ("```", "~~~")


@dataclass(frozen=True, slots=True)
class Piece:
    """One chunk of a split, with where it came from (see "Text preservation" above)."""

    text: str  # the chunk to send: reopen + source[start:end] + close
    start: int  # source[start:end] is the original text this chunk carries
    end: int
    reopen: str = ""  # synthetic opening fence line + "\n" (chunk starts inside a code block)
    close: str = ""  # "\n" + synthetic closing fence line (chunk stops inside a code block)


def split_markdown(text: str, limit: int, measure: Measure = codepoints) -> list[str]:
    """Split Markdown into chunks with ``measure(chunk) <= limit``, keeping code blocks whole.

    Text that fits is returned as one chunk, without leading blank lines and trailing
    whitespace; empty or whitespace-only text gives ``[]``. A code fence left open at the end
    (a cut-off model reply) runs to the end of the text and is closed in its last chunk.

    :raises ValueError: if ``limit < MIN_LIMIT``.
    """
    return [piece.text for piece in split_pieces(text, limit, measure)]


def split_pieces(text: str, limit: int, measure: Measure = codepoints) -> list[Piece]:
    """Like :func:`split_markdown`, but say which part of ``text`` each chunk carries.

    :raises ValueError: if ``limit < MIN_LIMIT``.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}, got {limit}")
    if "```" not in text and "~~~" not in text:  # no fence: most replies fit as they are
        start, end = _skip(text, 0), len(text.rstrip())
        if start >= end:
            return []
        if measure(text[start:end]) <= limit:
            return [Piece(text[start:end], start, end)]
    return _Splitter(text, limit, measure).run()


class _Zone(NamedTuple):
    """Where the current chunk may end: ``lo <= b <= hi``, ``b > floor`` for a soft break."""

    lo: int
    hi: int
    floor: int
    fence: Fence | None  # ending here needs this fence's closing line


class _Splitter:
    def __init__(self, text: str, limit: int, measure: Measure) -> None:
        self.pos = 0  # start of the chunk being built
        self._last_line_end = (0, -1)
        self.text = text
        self.limit = limit
        self.measure = measure
        fences = scan_fences(text, measure)
        self.fences = [f for f in fences if f.overhead + _MIN_FENCE_BODY <= limit]
        self.starts = [f.start for f in self.fences]
        self.ends = [f.end for f in self.fences]

    def run(self) -> list[Piece]:
        text, measure = self.text, self.measure
        n_eff = len(text.rstrip())
        last = self.fences[-1] if self.fences else None
        # The text ends inside an unclosed fence: the last chunk must close it.
        tail_close = last.close if last and not last.closed and last.start < n_eff else ""
        pieces: list[Piece] = []
        pos = _skip(self.text, 0)
        while pos < n_eff:
            ctx = self._fence_at(pos)
            reopen = ctx.reopen if ctx else ""
            budget = self.limit - measure(reopen)
            if self._reach(pos, budget - measure(tail_close)) >= n_eff:
                pieces.append(self._piece(pos, n_eff, reopen, tail_close))
                break
            floor = self._first_nonspace(pos)
            room = budget - (measure(ctx.close) if ctx else 0)
            if self._reach(pos, room) <= floor:
                if floor == pos:
                    raise ValueError("measure of a single character exceeds the limit")
                pos = floor  # the indentation alone fills a chunk: drop it
                continue
            b, inside = self._choose(pos, floor, budget)
            pieces.append(self._piece(pos, b, reopen, inside.close if inside else ""))
            pos = _skip(self.text, b)
        return pieces

    # -- helpers ------------------------------------------------------------------------

    def _piece(self, pos: int, b: int, reopen: str, close: str) -> Piece:
        end = pos + len(self.text[pos:b].rstrip())
        return Piece(reopen + self.text[pos:end] + close, pos, end, reopen, close)

    def _reach(self, pos: int, budget: int) -> int:
        """The largest ``e`` with ``measure(text[pos:e]) <= budget``."""
        text, measure = self.text, self.measure
        if budget <= 0:
            return pos
        hi = min(len(text), pos + budget)  # every character measures at least 1
        if measure is codepoints or measure(text[pos:hi]) <= budget:
            return hi
        lo = pos
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if measure(text[pos:mid]) <= budget:
                lo = mid
            else:
                hi = mid
        return lo

    def _first_nonspace(self, i: int) -> int:
        return _WS_RUN.match(self.text, i).end()  # type: ignore[union-attr]

    def _fence_at(self, pos: int) -> Fence | None:
        """The fence whose body ``pos`` is in (the chunk starts inside a code block)."""
        i = bisect_right(self.starts, pos) - 1
        if i >= 0 and self.fences[i].start < pos < self.fences[i].end:
            return self.fences[i]
        return None

    # -- choosing the break -------------------------------------------------------------

    def _zones(self, pos: int, floor: int, budget: int) -> list[_Zone]:
        """Split the reachable window into places to break: outside code blocks, and inside
        at most one code block too big to keep whole (the last zone)."""
        e0 = self._reach(pos, budget)
        zones: list[_Zone] = []
        cursor = pos
        i = bisect_right(self.ends, pos)
        while i < len(self.fences) and self.fences[i].start < e0:
            f = self.fences[i]
            if f.start >= cursor and f.start > floor:
                zones.append(_Zone(cursor, f.start, floor, None))
            if f.closed and f.end <= e0:
                cursor = f.end  # the block (or the rest of it) fits: keep it whole
                i += 1
                continue
            cursor = -1
            if f.start > pos and f.size <= self.limit:
                break  # it fits in an empty chunk: stop before it, it moves whole
            e_c = self._reach(pos, budget - self.measure(f.close))
            lo = max(pos, f.body_start)
            code_floor = self._first_nonspace(lo)
            hi = min(e_c, f.content_end - 1)  # leave some code for the next chunk
            if hi <= code_floor:
                hi = min(e_c, f.content_end)
            if hi > code_floor:
                zones.append(_Zone(lo, hi, code_floor, f))
            elif lo > pos and e_c >= f.start + len(f.reopen) - 1 and self.text[lo - 1] == "\n":
                # No code fits, or not even the opening line's trailing spaces: an empty block.
                zones.append(_Zone(lo - 1, max(hi, lo - 1), lo - 2, f))
            break
        if cursor >= 0 and e0 > floor:
            zones.append(_Zone(cursor, e0, floor, None))
        return zones

    def _choose(self, pos: int, floor: int, budget: int) -> tuple[int, Fence | None]:
        """The end of the chunk starting at ``pos``, and the fence it stops inside, if any."""
        self.pos = pos
        zones = self._zones(pos, floor, budget)
        if not zones:  # cannot happen (run() checks the room); cut rather than loop forever
            return max(floor + 1, self._reach(pos, budget)), None
        last = zones[-1]
        t = pos + int((last.hi - pos) * _MIN_FILL)
        for z in reversed(zones):
            b = self._last_paragraph(z.lo, z.hi, max(z.floor + 1, t))
            if b is not None:
                return b, z.fence
        # Inside code any line break beats cutting a line in two.
        for z in reversed(zones):
            b = self._last_line(z.lo, z.hi, z.floor + 1 if z.fence else max(z.floor + 1, t))
            if b is not None:
                return b, z.fence
        spans: list[tuple[int, int]] = []
        if last.fence is None:
            spans = self._inline_spans(last)
            b = self._last_sentence(last, max(floor + 1, t), spans)
            if b is not None:
                return b, None
        b = self._last_word(last, spans)
        if b is not None:
            return b, last.fence
        # No good break: take any soft break, however early, rather than cut a word.
        for z in reversed(zones):
            if z.fence is None:
                soft = [self._last_line(z.lo, z.hi, z.floor + 1)]
                if z is last:
                    soft.append(self._last_sentence(z, z.floor + 1, spans))
                found = [b for b in soft if b is not None]
                if found:
                    return max(found), None
        return self._hard_cut(last, spans), last.fence

    def _last_paragraph(self, lo: int, hi: int, least: int) -> int | None:
        text = self.text
        j = text.rfind("\n", lo, hi + 1)
        while j >= least:
            if _BLANK_AHEAD.match(text, j + 1):
                return j
            j = text.rfind("\n", lo, j)
        return None

    def _last_line(self, lo: int, hi: int, least: int) -> int | None:
        j = self.text.rfind("\n", lo, hi + 1)
        return j if j >= least else None

    def _segment(self, z: _Zone) -> tuple[int, int]:
        """The zone's last line: where it starts, and where its text starts (after the
        indentation, if the zone holds the start of the line)."""
        text = self.text
        seg = max(z.lo, text.rfind("\n", z.lo, z.hi) + 1)
        if seg == 0 or text[seg - 1] == "\n":
            return seg, _INDENT.match(text, seg).end()  # type: ignore[union-attr]
        return seg, seg

    def _last_sentence(self, z: _Zone, least: int, spans: list[tuple[int, int]]) -> int | None:
        text = self.text
        seg, indent_end = self._segment(z)
        best = None
        for m in _SENTENCE_END.finditer(text, max(seg, least - 4), min(len(text), z.hi + 2)):
            b = m.end()
            if b > z.hi:
                break
            if b < least or inside(spans, b) or not self._clean(b, z.fence):
                continue
            if text[indent_end : m.start()].isdigit():
                continue  # "1. " starts an ordered list item, it does not end a sentence
            best = b
        return best

    def _last_word(self, z: _Zone, spans: list[tuple[int, int]]) -> int | None:
        text = self.text
        seg, indent_end = self._segment(z)
        least = max(z.floor + 1, indent_end + 1)  # never cut inside indentation
        j = text.rfind(" ", seg, z.hi + 1)
        while j >= least:
            span = inside(spans, j)
            if span is not None:
                j = text.rfind(" ", seg, span[0])
            elif not self._clean(j, z.fence):
                j = text.rfind(" ", seg, j)
            else:
                break
        best = j if j >= least else None
        # A code span or link crossing the window end: break just before it.
        crossing = inside(spans, z.hi)
        if crossing and crossing[0] >= least and (best is None or crossing[0] > best):
            if self._clean(crossing[0], z.fence):
                best = crossing[0]
        return best

    def _hard_cut(self, z: _Zone, spans: list[tuple[int, int]]) -> int:
        """Cut as late as possible, but not through a span, a grapheme or indentation."""
        text = self.text
        crossing = inside(spans, z.hi)
        if crossing and crossing[0] > z.floor and self._clean(crossing[0], z.fence):
            return crossing[0]  # cut before a code span or link, not through it
        b = z.hi
        for _ in range(_MAX_BACKOFF):
            if b - 1 <= z.floor or b >= len(text) or not joins(text, b):
                break
            b -= 1
        if b < len(text) and joins(text, b):
            b = z.hi  # a cluster longer than the room: it has to be cut
        # A cut inside a line's indentation would shift the line: cut at the line start.
        line_start = max(z.lo, text.rfind("\n", z.lo, b) + 1)
        if line_start > z.floor and not text[line_start:b].strip():
            return line_start
        if self._clean(b, z.fence):
            return b
        # The cut would turn a piece of the line into a fence line: look a little earlier,
        # then inside the line's leading backticks or tildes ("``" is no fence).
        first: int = _INDENT.match(text, line_start).end()  # type: ignore[union-attr]
        nearby = range(b - 1, max(z.floor, b - _MAX_BACKOFF), -1)
        for c in (*nearby, first + 2, first + 1):
            if (
                z.floor < c <= min(z.hi, len(text) - 1)
                and not joins(text, c)
                and self._clean(c, z.fence)
            ):
                return int(c)
        if z.fence and z.lo > self.pos:
            # No clean cut in the code's first line (". ```" after a long opening line): end
            # the chunk before it, an empty block, and carry the line whole.
            j = text.rfind("\n", z.lo - 1, line_start)
            if j >= 0:
                return j
        return b  # a run of backticks or tildes longer than a chunk: no cut is clean

    def _clean(self, b: int, fence: Fence | None) -> bool:
        """Whether cutting at ``b`` leaves both halves of the line meaning what they meant: a
        chunk starting or ending mid-line must not start its last or first line with a fence."""
        text = self.text
        line_start = max(self.pos, text.rfind("\n", self.pos, b) + 1)
        first: int = _INDENT.match(text, line_start).end()  # type: ignore[union-attr]
        if first < b and text.startswith(_RUNS, first):
            if is_fence_line(text[line_start:b].rstrip(), fence):
                return False
        rest = _skip(self.text, b)
        if rest > 0 and text[rest - 1] != "\n" and text.startswith(_RUNS, rest):
            if is_fence_line(text[rest : self._line_end(rest)], fence):
                return False
        return True

    def _line_end(self, i: int) -> int:
        """Where the line holding ``i`` ends; remembered, so that a long line is not searched
        again for every chunk cut out of it."""
        start, end = self._last_line_end
        if not start <= i <= end:
            end = self.text.find("\n", i)
            end = len(self.text) if end < 0 else end
            self._last_line_end = (i, end)
        return end

    def _inline_spans(self, z: _Zone) -> list[tuple[int, int]]:
        """Code spans and links on the zone's last line that fit in a chunk (kept whole)."""
        text = self.text
        # Pairing backticks from the segment start is right: it is a line start, or the
        # start of this chunk, and chunks do not start inside a span that fits.
        start, _ = self._segment(z)
        stop = text.find("\n", z.hi, z.hi + self.limit)
        stop = stop if stop >= 0 else min(len(text), z.hi + self.limit)
        limit, measure = self.limit, self.measure
        # Short spans fit whatever the measure (up to 4 units a character, like UTF-8).
        return [
            (s, e)
            for s, e in inline_spans(text, start, z.hi, stop)
            if 4 * (e - s) <= limit or (e - s <= limit and measure(text[s:e]) <= limit)
        ]


def _skip(text: str, b: int) -> int:
    """Where the chunk after a break at ``b`` starts: past the break's whitespace, but at the
    start of the line if the break crossed a newline (indentation matters)."""
    end = _WS_RUN.match(text, b).end()  # type: ignore[union-attr]
    nl = text.rfind("\n", b, end)
    if nl >= 0:
        return nl + 1
    if b == 0 or text[b - 1] == "\n":
        return b
    return end
