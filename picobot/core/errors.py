"""The exceptions picobot raises, decided by class alone.

    PicobotError
    ├── ConfigError                 bad config file or value; names the key path
    ├── BusClosed                   publishing to a bus that was closed
    ├── StartupError                cannot start: names the file or address (exit 2)
    ├── StorageError                a write to data_dir failed (disk full, I/O error)
    │   └── Superseded              cluster mode: another node took this delivery over
    └── ChannelError                anything a platform answered or failed with
        ├── TransientError          worth retrying
        │   ├── RateLimited         wait exactly `retry_after`, not counted as a failure
        │   └── ChannelTimeout      (also a TimeoutError) network timeouts, dropped connections, 5xx
        └── PermanentError          retrying cannot help
            ├── Forbidden           bot blocked, kicked, missing permissions
            ├── ChatNotFound
            ├── ChatMigrated        resend to `new_chat_id`
            └── BadRequest
                ├── FormattingRejected   resend once as plain text
                └── MessageTooLong

Channels translate their SDK's exceptions into these once, at the edge (`translate_errors()`);
nothing outside `channels/` sees an SDK exception.
"""

from __future__ import annotations


class PicobotError(Exception):
    """Base class of every error picobot raises on purpose."""


class ConfigError(PicobotError):
    """The configuration is invalid. `path` is the dotted key, e.g. ``channels.telegram.token``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class BusClosed(PicobotError):
    """The bus was closed: it accepts nothing more."""


class ChannelError(PicobotError):
    """A platform refused or failed an operation."""


class TransientError(ChannelError):
    """Temporary: retrying later can succeed."""


class RateLimited(TransientError):
    """The platform asked us to wait `retry_after` seconds before the next call; `overall`:
    for every chat of the bot (a global flood), not just this one."""

    def __init__(self, retry_after: float, message: str = "", *, overall: bool = False) -> None:
        self.retry_after = max(0.0, float(retry_after))
        self.overall = overall
        super().__init__(message or f"rate limited, retry after {self.retry_after:g} s")


class ChannelTimeout(TransientError, TimeoutError):
    """The call timed out or the connection dropped; it may or may not have been delivered."""


class PermanentError(ChannelError):
    """Retrying the same call cannot succeed."""


class Forbidden(PermanentError):
    """The bot may not write there (blocked, kicked, missing permissions)."""


class ChatNotFound(PermanentError):
    """The chat does not exist or the bot cannot see it."""


class ChatMigrated(PermanentError):
    """A Telegram group became a supergroup: resend to `new_chat_id`."""

    def __init__(self, new_chat_id: str, message: str = "") -> None:
        self.new_chat_id = str(new_chat_id)
        super().__init__(message or f"chat migrated to {self.new_chat_id}")


class BadRequest(PermanentError):
    """The platform rejected the request as malformed."""


class FormattingRejected(BadRequest):
    """The platform could not parse our markup; the text can be resent as plain text."""


class MessageTooLong(BadRequest):
    """The text was over the platform's limit (a bug in our splitting if it ever happens)."""


class StartupError(PicobotError):
    """The daemon cannot start (data_dir in use or unwritable, port taken, a corrupt file).
    The message is one line naming the file or address and what to do; `picobot` exits 2."""


class StorageError(PicobotError):
    """A write to data_dir failed (disk full, I/O error, the folder deleted). Nothing was
    half-written: the caller may answer "try again later"."""


class Superseded(StorageError):
    """Cluster mode: another node took this work over (the lease that fenced the write moved
    on). Nothing was written; this node stops the work, the other continues it."""
