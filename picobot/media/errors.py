"""Why a file was refused, in words the user sees (one line each).

MediaError                      a file could not be taken; `reason` is shown to the user
├── FileTooLarge                over `media.max_bytes` (or a platform's upload limit)
├── EmptyFile
├── UnsafeName                  a path or control characters in the file name
├── ContentMismatch             the bytes are not what the name says
├── NotAnImage                  an image that cannot be decoded
├── DownloadFailed              the platform refused or lost the download
├── TranscriptionFailed         the speech-to-text endpoint refused the audio
└── MediaNotFound               no such file in the store (expired, or a bad id)
"""

from __future__ import annotations

from picobot.core.errors import PicobotError


def megabytes(size: int) -> str:
    """MB = 10⁶ bytes, at most one decimal: 25_300_000 -> "25.3", 20_000_000 -> "20"."""
    text = f"{size / 1_000_000:.1f}"
    return text.removesuffix(".0")


class MediaError(PicobotError):
    """A file was refused. `reason` names the problem in a few words, for the user."""

    reason = "could not read the file"

    def __init__(self, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)


class FileTooLarge(MediaError):
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"file too large ({megabytes(size)} MB, limit {megabytes(limit)} MB)")


class EmptyFile(MediaError):
    reason = "empty file"


class UnsafeName(MediaError):
    reason = "unsafe file name"


class ContentMismatch(MediaError):
    reason = "content does not match its name"


class NotAnImage(MediaError):
    reason = "not a valid image"


class DownloadFailed(MediaError):
    reason = "the file could not be downloaded"


class TranscriptionFailed(MediaError):
    reason = "the voice note could not be transcribed"


class MediaNotFound(MediaError):
    reason = "the file is no longer available"
