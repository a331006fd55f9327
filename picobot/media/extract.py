"""Text the model can read from a stored file: text-like files as they are, PDFs via pypdf."""

from __future__ import annotations

import logging
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PyPdfError

log = logging.getLogger("picobot.media")


def extract_text(path: Path, mime: str, limit: int) -> str | None:
    """Up to `limit` characters of the file's text, or None if it has none we can read.

    A cut is marked with ``[… truncated]``. Blocking: run it in a thread.
    """
    if mime == "application/pdf":
        text = _pdf_text(path, limit)
    elif mime.startswith("text/") or mime in ("application/json", "application/xml"):
        with path.open("r", encoding="utf-8", errors="replace") as f:
            text = f.read(limit + 1)
    else:
        return None
    if text is None or not text.strip():
        return None
    if len(text) > limit:
        return text[:limit] + "\n[… truncated]"
    return text


def _pdf_text(path: Path, limit: int) -> str | None:
    try:
        reader = PdfReader(path)
        parts: list[str] = []
        total = 0
        for page in reader.pages:
            page_text = page.extract_text() or ""
            parts.append(page_text)
            total += len(page_text)
            if total > limit:
                break
        return "\n".join(parts)
    except (PyPdfError, ValueError, OSError, KeyError, TypeError) as exc:
        log.info("could not read PDF text: %s", type(exc).__name__)
        return None
