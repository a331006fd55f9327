"""Tests for picobot.text.split: fence-aware Markdown splitting."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from picobot.text.split import (
    MIN_LIMIT,
    Measure,
    Piece,
    codepoints,
    split_markdown,
    split_pieces,
    utf16_units,
)

# -- an independent reading of the fence rules (see the module docstring) ----------------------

_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")


class Block:
    def __init__(self, start: int, end: int, opener: str, closer: str | None) -> None:
        self.start, self.end, self.opener = start, end, opener
        self.closed = closer is not None
        self.closer = "\n" + closer if closer is not None else ""


def fenced_blocks(text: str) -> list[Block]:
    """Fenced blocks of ``text`` as character ranges, opening line included."""
    blocks: list[Block] = []
    open_at: tuple[int, str, str] | None = None  # (offset, run, opening line)
    offset = 0
    for line in text.split("\n"):
        m = _FENCE.fullmatch(line)
        if m:
            run, rest = m.group(1), m.group(2)
            if open_at is None:
                if not (run[0] == "`" and "`" in rest):
                    open_at = (offset, run, line)
            elif run[0] == open_at[1][0] and len(run) >= len(open_at[1]) and not rest.strip():
                end = offset + len(line.rstrip())
                blocks.append(Block(open_at[0], end, open_at[2], line.rstrip()))
                open_at = None
        offset += len(line) + 1
    if open_at is not None:
        blocks.append(Block(open_at[0], len(text), open_at[2], None))
    return blocks


_RUN = re.compile(r"`{3,}|~{3,}")


def fences_have_room(text: str, limit: int, measure: Measure) -> bool:
    """False where the documented limits of the fence promises apply: a fence whose lines leave
    no room to reopen it is treated as text, and a run of backticks or tildes too long for a
    chunk, or a code line ending in one that does not fit beside the reopened opening line
    (". ~~~~~~"), cannot be cut without one half looking like a fence line."""
    if max((len(m.group()) for m in _RUN.finditer(text)), default=0) > limit // 4:
        return False
    for b in fenced_blocks(text):
        m = _FENCE.fullmatch(b.opener)
        assert m
        close = "\n" + b.opener[: m.start(1)] + m.group(1)
        overhead = measure(b.opener.rstrip() + "\n") + max(measure(close), measure(b.closer))
        if overhead + 8 > limit:
            return False
        body = text[b.start + len(b.opener) + 1 : b.end - len(b.closer)]
        for line in body.rstrip().split("\n"):
            line = line.rstrip()
            if line.endswith(m.group(1)[0] * 3) and measure(line) > limit - overhead:
                return False
    return True


def non_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_split(text: str, limit: int, measure: Measure) -> list[Piece]:
    """Assert every promise of split_pieces/split_markdown for one input."""
    pieces = split_pieces(text, limit, measure)
    assert split_markdown(text, limit, measure) == [p.text for p in pieces]
    if not text.strip():
        assert pieces == []
        return pieces
    blocks = fenced_blocks(text)
    previous_end = 0
    for i, p in enumerate(pieces):
        # Size and content.
        assert measure(p.text) <= limit
        assert p.text.strip()
        assert p.text == p.reopen + text[p.start : p.end] + p.close
        assert p.start < p.end
        assert text[p.end - 1 : p.end].strip(), "a chunk never ends with whitespace"
        # Text preservation: only whitespace between the pieces.
        assert not text[previous_end : p.start].strip()
        previous_end = p.end
        # Every chunk's fences are balanced.
        assert all(b.closed for b in fenced_blocks(p.text)), p.text
        # A reopened fence repeats the original opening line (language tag included), and the
        # chunk before closed it.
        inside = [b for b in blocks if b.start < p.start < b.end]
        if inside:
            assert p.reopen == inside[0].opener.rstrip() + "\n"
            assert i > 0 and pieces[i - 1].close
        else:
            assert p.reopen == ""
        if p.close:
            assert _FENCE.fullmatch(p.close[1:]), p.close
    assert not text[previous_end:].strip()
    # The non-whitespace characters, synthetic fence lines removed, are exactly the original's.
    carried = "".join(p.text[len(p.reopen) : len(p.text) - len(p.close)] for p in pieces)
    assert non_space(carried) == non_space(text)
    # A closed block that fits in a chunk is never cut.
    for b in blocks:
        if b.closed and measure(text[b.start : b.end].rstrip()) <= limit:
            for p in pieces:
                assert not b.start < p.start < b.end and not b.start < p.end < b.end
    return pieces


# -- generated Markdown-ish text -------------------------------------------------------------

# Tokens rather than characters: cheap to draw (2000 examples in about two seconds) and they
# combine into paragraphs, long words, fences with and without a language (closed, unclosed,
# closed by a longer run), very long lines inside fences, inline code and links.
_TOKENS = [
    *["word", "longerword", " ", " ", "  ", "\t", "\n", "\n", "\n\n", "\r\n", "\n   \n"],
    *[". ", "! ", "? ", "。", "你好世界", "é", "e\u0301", "😀", "👍🏽", "🇩🇪", "👨\u200d👩\u200d👧"],
    *["x" * 45, "y" * 130, "supercalifragilistic" * 3],
    *["\n```\n", "\n```python\n", "\n~~~~\n", "\n  ```js\n", "\n````\n", "\n```c++ x\n"],
    *["\n```  \n", "```", "~~~", "`", "\n    ```\n"],
    *["`inline code`", "`a b c d e f`", "``two ` ticks``", "[a link](https://example.com/x)"],
    *["- item ", "1. ", "> ", "    indented()"],
]
_runs = st.tuples(st.sampled_from(_TOKENS), st.integers(1, 6)).map(lambda t: t[0] * t[1])
markdownish = st.lists(st.one_of(st.sampled_from(_TOKENS), _runs), max_size=60).map("".join)
measures = st.sampled_from([codepoints, utf16_units])
# Mostly small limits, so that most texts need several chunks.
limits = st.one_of(st.integers(MIN_LIMIT, 60), st.integers(61, 160), st.sampled_from([400, 2000]))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=markdownish, limit=limits, measure=measures)
@example(text="```python\n" + "x = 1\n" * 40 + "```\n", limit=40, measure=codepoints)
@example(text="~~~~\nunclosed and long " * 30, limit=MIN_LIMIT, measure=utf16_units)
@example(text="```. . . . . word" + "\n" * 10 + ". ```", limit=MIN_LIMIT, measure=codepoints)
@example(text="  ``` iiiiiiiii" + "\n" * 10 + "! ``````", limit=MIN_LIMIT, measure=codepoints)
@example(text=" ~~~iiiiiiiiiii" + "\n" * 10 + " \n. ~~~~", limit=34, measure=utf16_units)
@example(text="  ~~~      `code`         \n    ```\n", limit=MIN_LIMIT, measure=codepoints)
def test_split_properties(text: str, limit: int, measure: Measure) -> None:
    assume(fences_have_room(text, limit, measure))
    check_split(text, limit, measure)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), limit=st.integers(MIN_LIMIT, 80), measure=measures)
def test_split_arbitrary_text(text: str, limit: int, measure: Measure) -> None:
    assume(fences_have_room(text, limit, measure))
    check_split(text, limit, measure)


# -- examples --------------------------------------------------------------------------------


def test_limit_below_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_markdown("hello", MIN_LIMIT - 1)


@pytest.mark.parametrize("text", ["", "   ", "\n\n \t\n"])
def test_empty_text_gives_no_chunks(text: str) -> None:
    assert split_markdown(text, 100) == []


def test_text_that_fits_is_one_chunk_without_surrounding_blank_lines() -> None:
    assert split_markdown("\n\nHello **world**\n\n", 100) == ["Hello **world**"]
    assert split_markdown("  indented first line\nsecond", 100) == ["  indented first line\nsecond"]


def test_paragraph_break_is_preferred_over_a_later_line_break() -> None:
    first = "First paragraph, long enough to fill most of the chunk."
    text = f"{first}\n\nSecond paragraph line one\nline two of it"
    chunks = split_markdown(text, 80)
    assert chunks[0] == first


def test_line_break_beats_a_paragraph_break_that_leaves_the_chunk_nearly_empty() -> None:
    text = "Tiny.\n\n" + "A line that is quite long and fills the chunk\n" + "more " * 20
    chunks = split_markdown(text, 60)
    assert chunks[0] == "Tiny.\n\nA line that is quite long and fills the chunk"


def test_line_break_is_preferred_over_sentence_end() -> None:
    text = "One sentence here. Another sentence\nthird line. And more words follow here"
    assert split_markdown(text, 60)[0] == "One sentence here. Another sentence"


def test_sentence_end_is_preferred_over_word_break() -> None:
    text = "The first sentence ends here. The second one is long and goes on and on and on."
    chunks = split_markdown(text, 50)
    assert chunks[0] == "The first sentence ends here."
    assert chunks[1].startswith("The second")


def test_cjk_sentence_end_is_a_break_point() -> None:
    text = "这是第一个句子。" * 3 + "这是一个很长的句子没有标点符号" * 3
    chunks = split_markdown(text, 40)
    assert chunks[0].endswith("。")


def test_word_break_when_there_is_no_better_one() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    chunks = split_markdown(text, 35)
    assert all(len(c) <= 35 for c in chunks)
    assert " ".join(chunks) == text  # cut at spaces only


def test_hard_cut_when_there_is_no_space() -> None:
    text = "x" * 100
    assert split_markdown(text, 40) == ["x" * 40, "x" * 40, "x" * 20]


def test_code_block_that_fits_moves_whole_to_the_next_chunk() -> None:
    code = "```python\n" + "\n".join(f"print({i})" for i in range(5)) + "\n```"
    text = "Some introduction that takes room.\n" + code + "\nAfter."
    chunks = split_markdown(text, 80)
    assert chunks[0] == "Some introduction that takes room."
    assert chunks[1] == code + "\nAfter."


def test_big_code_block_is_split_with_close_and_reopen() -> None:
    lines = [f"    value_{i:04d} = compute({i})  # step" for i in range(280)]
    code = "\n".join(lines)
    assert len(code) > 10_000
    text = f"Here is the code:\n\n```python\n{code}\n```\n\nDone."
    chunks = split_markdown(text, 1000)
    assert len(chunks) > 10
    assert all(len(c) <= 1000 for c in chunks)
    assert chunks[0].startswith("Here is the code:\n\n```python\n")
    for chunk in chunks[1:]:
        assert chunk.startswith("```python\n")  # reopened with its language
    for chunk in chunks[:-1]:
        assert chunk.endswith("\n```")
    assert chunks[-1].endswith("```\n\nDone.")
    # The code comes back line for line: the splitter cut only between lines.
    body = []
    for chunk in chunks:
        inner = chunk.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
        body.extend(inner.split("\n"))
    assert body == lines


def test_very_long_code_line_is_hard_cut_inside_the_fence() -> None:
    text = "```\n" + "y" * 200 + "\n```"
    chunks = split_markdown(text, 50)
    assert all(len(c) <= 50 and c.startswith("```\n") and c.endswith("\n```") for c in chunks)
    assert "".join(c[4:-4] for c in chunks) == "y" * 200


def test_code_indentation_survives_a_split() -> None:
    text = "```py\n" + "\n".join(f"        deep_{i}()" for i in range(20)) + "\n```"
    for chunk in split_markdown(text, 80):
        for line in chunk.split("\n")[1:-1]:
            assert line.startswith("        deep_")


def test_unclosed_fence_is_closed_in_every_chunk() -> None:
    text = "Answer:\n```js\n" + "\n".join(f"let v{i} = {i};" for i in range(30))
    chunks = split_markdown(text, 100)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.endswith("\n```")
    assert split_markdown("```py\nx = 1", 100) == ["```py\nx = 1\n```"]


def test_inline_code_span_is_not_split() -> None:
    text = "word " * 6 + "`a code span with spaces`" + " tail" * 5
    chunks = split_markdown(text, 45)
    assert chunks[0] == ("word " * 6).strip()
    assert chunks[1].startswith("`a code span with spaces`")


def test_link_is_not_split() -> None:
    text = "see " * 5 + "[the documentation](https://example.com/docs)" + " end"
    chunks = split_markdown(text, 50)
    assert chunks[0] == ("see " * 5).strip()
    assert chunks[1].startswith("[the documentation](https://example.com/docs)")


def test_crlf_is_never_split() -> None:
    text = "abc\r\n" * 40
    chunks = split_markdown(text, 33)
    assert all(not c.endswith("\r") and not c.startswith("\n") for c in chunks)
    assert "\r\n".join(chunks).count("abc") == 40
    code = "```\r\n" + "x" * 29 + "\r\n" + "y" * 200 + "\r\n```"
    for chunk in split_markdown(code, 34):
        assert "\r\n" in chunk or "\r" not in chunk.rstrip()


def test_hard_cut_keeps_graphemes_together() -> None:
    accented = "e\u0301" * 50
    for chunk in split_markdown(accented, 33):
        assert chunk[0] != "\u0301"
        assert len(chunk) % 2 == 0
    flags = "🇩🇪🇫🇷" * 20
    for chunk in split_markdown(flags, 33):
        assert len(chunk) % 2 == 0  # regional indicators stay in pairs
    family = "👨\u200d👩\u200d👧" * 10
    for chunk in split_markdown(family, 32):
        assert not chunk.startswith("\u200d") and not chunk.endswith("\u200d")


def test_utf16_measure_counts_astral_characters_twice() -> None:
    assert utf16_units("a😀") == 3 and codepoints("a😀") == 2
    text = "😀" * 100
    chunks = split_markdown(text, 32, utf16_units)
    assert chunks == ["😀" * 16] * 6 + ["😀" * 4]
    assert split_markdown(text, 32) == ["😀" * 32] * 3 + ["😀" * 4]


def test_utf16_measure_is_respected_inside_code() -> None:
    text = "```\n" + "\n".join("😀" * 10 for _ in range(20)) + "\n```"
    chunks = split_markdown(text, 50, utf16_units)
    assert all(utf16_units(c) <= 50 for c in chunks)
    assert all(c.startswith("```\n") and c.endswith("\n```") for c in chunks)


def test_a_cut_never_turns_part_of_a_line_into_a_fence() -> None:
    # "```" in the middle of a line is text; a chunk starting there would open a code block.
    text = "Type the marker ```python at the start of a line, then the code, then close it."
    inside = "```\n" + "code = 1  # a comment ```x that goes on and on\n" * 3 + "```"
    for limit in range(MIN_LIMIT, 70):
        for source in (text, inside):
            for chunk in split_markdown(source, limit):
                assert all(b.closed for b in fenced_blocks(chunk)), (limit, chunk)
        assert not any(c.startswith("```") for c in split_markdown(text, limit))


def test_code_line_without_a_clean_cut_moves_whole_after_an_empty_block() -> None:
    # Only ". " fits beside the opening line, and cutting there would leave "```" alone on a
    # line, closing the reopened fence: close an empty block instead and carry the line whole.
    text = "```. . . . . word" + "\n" * 10 + ". ```"
    pieces = check_split(text, MIN_LIMIT, codepoints)
    assert [p.text for p in pieces] == [
        "```. . . . . word\n```",
        "```. . . . . word\n. ```\n```",
    ]


def test_pieces_point_into_the_source() -> None:
    text = "Intro.\n\n```py\n" + "a = 1\n" * 20 + "```"
    pieces = split_pieces(text, 60)
    assert pieces[0].start == 0 and pieces[0].reopen == ""
    assert pieces[1].reopen == "```py\n" and pieces[0].close == "\n```"
    for p in pieces:
        assert p.text == p.reopen + text[p.start : p.end] + p.close


def test_fence_nested_in_a_list_is_kept_whole() -> None:
    item = "1. Run this:\n\n     ```bash\n     make build\n     make test\n     ```\n"
    text = "Steps follow. " * 3 + "\n\n" + item + "\n2. Done."
    chunks = split_markdown(text, 90)
    assert any("```bash\n     make build\n     make test\n     ```" in c for c in chunks)


def test_splitting_a_megabyte_is_fast() -> None:
    paragraph = "Some words in a sentence. " * 20 + "\n\n"
    code = "```python\n" + "def f(x):\n    return x * 2\n" * 30 + "```\n\n"
    text = (paragraph * 3 + code) * 420
    assert len(text) > 1_000_000
    for measure in (codepoints, utf16_units):
        started = time.perf_counter()
        chunks = split_markdown(text, 4096, measure)
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"{measure.__name__}: {elapsed:.2f} s"
        assert all(measure(c) <= 4096 for c in chunks)


def test_smallest_limit_still_reopens_fences() -> None:
    text = "~~~~ruby\n" + "puts 1\n" * 50 + "~~~~"
    pieces = check_split(text, MIN_LIMIT, utf16_units)
    assert len(pieces) > 5
    assert [p.reopen for p in pieces[1:]] == ["~~~~ruby\n"] * (len(pieces) - 1)
