"""Lengths in a platform's unit, and where a cut would split a grapheme."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

Measure = Callable[[str], int]
"""Length of a string in a platform's unit. Must be additive (a sum of per-character costs,
each at least 1), like both measures below."""

_ZWJ = "\u200d"


def codepoints(text: str) -> int:
    """Length in Unicode code points (Telegram's limit on visible text, Slack)."""
    return len(text)


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units (JavaScript's ``length``; a safe budget for Discord)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def joins(text: str, b: int) -> bool:
    """True if ``text[b-1]`` and ``text[b]`` belong to one grapheme (cheap approximation)."""
    a, c = text[b - 1], text[b]
    if (a == "\r" and c == "\n") or a == _ZWJ or c == _ZWJ:
        return True
    if "\ud800" <= a <= "\udbff" and "\udc00" <= c <= "\udfff":
        return True
    cp = ord(c)
    if 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:  # skin tones, emoji tags
        return True
    if unicodedata.category(c) in ("Mn", "Me", "Mc"):  # combining marks, variation selectors
        return True
    if is_regional(a) and is_regional(c):  # flags are pairs of regional indicators
        k = b - 1
        while k > 0 and is_regional(text[k - 1]):
            k -= 1
        return (b - k) % 2 == 1
    return False


def is_regional(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"
