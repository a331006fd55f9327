"""What a file is, from its bytes (puremagic), and whether its name agrees; safe names.

The declared MIME type and the name are hints only: a file is what its first bytes say.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from dataclasses import dataclass

from picobot.media.errors import ContentMismatch, UnsafeName

HEAD_BYTES = 8192  # what sniffing looks at
MAX_NAME = 120

# Text formats the model can read inline, by extension (content must also decode as text).
TEXT_EXTENSIONS = frozenset(
    ".txt .md .markdown .rst .csv .tsv .json .jsonl .yaml .yml .toml .ini .cfg .conf .log .xml"
    " .html .htm .css .js .mjs .ts .tsx .jsx .py .rb .go .rs .java .kt .c .h .cc .cpp .hpp .cs"
    " .php .sh .bash .zsh .sql .swift .scala .lua .pl .r .m .tex .diff .patch .env .srt"
    " .vtt".split()
)
# puremagic names some formats oddly or not at all; these are what we say instead.
_MIME_FIXES = {
    "application/ogg": "audio/ogg",
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
}
_EXT_MIME = {
    ".m4a": "audio/mp4",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".webm": "video/webm",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".yaml": "application/x-yaml",
    ".yml": "application/x-yaml",
}


@dataclass(frozen=True, slots=True)
class Sniffed:
    mime: str
    family: str  # image | audio | video | pdf | text | other


def family_of(mime: str) -> str:
    major = mime.partition("/")[0]
    if major in ("image", "audio", "video", "text"):
        return major
    if mime == "application/pdf":
        return "pdf"
    if mime in ("application/json", "application/xml", "application/x-yaml"):
        return "text"
    return "other"


def sniff(head: bytes, name: str = "") -> Sniffed:
    """The type of a file from its first bytes; `name` only breaks ties between candidates."""
    import puremagic  # its signature table is loaded when the first file comes

    ext = _ext(name)
    try:
        matches = puremagic.magic_string(head, filename=name or None)
    except (puremagic.PureError, ValueError):
        matches = []
    matches = [m for m in matches if m.byte_match]  # a guess from the name alone is no evidence
    # The candidate with the name's extension first (a zip named .docx is a docx).
    matches.sort(key=lambda m: m.extension != ext)
    for match in matches:
        mime = match.mime_type or _EXT_MIME.get(match.extension, "")
        if mime:
            mime = _MIME_FIXES.get(mime, mime)
            return Sniffed(mime, family_of(mime))
    if _is_text(head):
        if ext in TEXT_EXTENSIONS:
            named = _guess(ext)
            return Sniffed(named if family_of(named) == "text" else "text/plain", "text")
        return Sniffed("text/plain", "text")
    return Sniffed("application/octet-stream", "other")


def check_name(name: str, sniffed: Sniffed) -> None:
    """:raises ContentMismatch: when the name claims an image, audio, video, PDF or text file
    and the bytes are something else (a renamed executable, a text file called .png)."""
    ext = _ext(name)
    if not ext:
        return
    claimed = "text" if ext in TEXT_EXTENSIONS else family_of(_guess(ext))
    if claimed == "other":
        return
    media = {"audio", "video"}  # voice notes come as .ogg/.webm in either
    if claimed == sniffed.family or (claimed in media and sniffed.family in media):
        return
    raise ContentMismatch(f"content does not match its name ({name} is {sniffed.mime})")


def safe_name(name: str | None, fallback: str = "file") -> str:
    """A display name: no directories, no control characters, at most `MAX_NAME` characters.

    :raises UnsafeName: when the name holds a path (``../../etc/passwd``, ``C:\\x``).
    """
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    if "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise UnsafeName(f"unsafe file name ({name[:60]!r})")
    cleaned = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    cleaned = re.sub(r"\s+", " ", cleaned).lstrip(".")
    if not cleaned:
        return fallback
    stem, dot, ext = cleaned.rpartition(".")
    if dot and len(cleaned) > MAX_NAME:
        return stem[: MAX_NAME - len(ext) - 1] + "." + ext
    return cleaned[:MAX_NAME]


def extension_for(mime: str) -> str:
    return {"audio/ogg": ".ogg", "image/jpeg": ".jpg"}.get(mime) or (
        mimetypes.guess_extension(mime) or ".bin"
    )


def _guess(ext: str) -> str:
    return _EXT_MIME.get(ext) or mimetypes.types_map.get(ext, "application/octet-stream")


def _ext(name: str) -> str:
    return ("." + name.rpartition(".")[2].lower()) if "." in name else ""


def _is_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the head is still text.
        return exc.start >= len(head) - 3
    return True
