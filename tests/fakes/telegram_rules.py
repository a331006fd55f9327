"""Bot API rules used by ``fake_telegram``: entity parsing, text limits, flood control,
plus the record types and HTTP helpers of the fake.

The HTML parser follows tdlib's ``parse_html`` (the code behind the real Bot API), including
its error wording, so a string the fake accepts renders the same on Telegram. One deliberate
difference: tdlib keeps a bare ``&`` as text, the fake rejects it when ``strict_amp`` is on
(the Bot API docs require escaping it, and an unescaped ``&`` usually means a missing escape).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_TEXT = 4096  # Unicode code points of visible text, after entity parsing and trimming

_SPACES = " \t\r\n\f\v"
_HTML_TAGS = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "tg-emoji": "custom_emoji",
    "pre": "pre",
    "code": "code",
    "blockquote": "blockquote",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup of "
    "the specified message are exactly the same as a current content and reply markup of the "
    "message"
)
TERMINATED = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)


class ApiError(Exception):
    """An error answer of the Bot API; the HTTP status equals ``code``."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class EntityParseError(ValueError):
    """Text after "Bad Request: can't parse entities: "."""


def utf16_len(text: str) -> int:
    """Entity offsets/lengths are in UTF-16 code units (the length *limit* is not)."""
    return len(text.encode("utf-16-le")) // 2


def _is_space(ch: str) -> bool:
    return ch != "" and ch in _SPACES


def _decode_entity(text: str, pos: int) -> tuple[str | None, int]:
    """Decode ``&...;`` at ``pos`` like tdlib: numeric refs and lt/gt/amp/quot; ';' optional."""
    end = pos + 1
    if text.startswith("&#", pos):
        end += 1
        base = 10
        if end < len(text) and text[end] in "xX":
            base, end = 16, end + 1
        digits = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
        start = end
        while end < len(text) and text[end] in digits:
            end += 1
        code = int(text[start:end], base) if end > start else 0
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None, pos
        char = chr(code)
    else:
        while end < len(text) and text[end].isascii() and text[end].isalpha():
            end += 1
        char = _NAMED_ENTITIES.get(text[pos + 1 : end])  # type: ignore[assignment]
        if char is None:
            return None, pos
    return char, end + 1 if text.startswith(";", end) else end


def parse_html(text: str, *, strict_amp: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Return (visible text, entities) or raise EntityParseError with tdlib's wording."""
    n = len(text)

    def at(k: int) -> str:  # "" plays the role of tdlib's terminating NUL
        return text[k] if k < n else ""

    def boff(k: int) -> int:  # tdlib reports UTF-8 byte offsets
        return len(text[:k].encode())

    out: list[str] = []
    u16 = 0
    stack: list[list[Any]] = []  # [tag, argument, utf16 start]
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            char, j = _decode_entity(text, i)
            if char is not None:
                out.append(char)
                u16 += utf16_len(char)
                i = j
                continue
            if strict_amp:
                raise EntityParseError(f"Unescaped '&' at byte offset {boff(i)}; use &amp;")
        if c != "<":
            out.append(c)
            u16 += utf16_len(c)
            i += 1
            continue
        begin = i
        i += 1
        if at(i) != "/":
            while at(i) != "" and not _is_space(at(i)) and at(i) != ">":
                i += 1
            if at(i) == "":
                raise EntityParseError(f"Unclosed start tag at byte offset {boff(begin)}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(
                    f'Unsupported start tag "{tag}" at byte offset {boff(begin)}'
                )
            argument = ""
            while at(i) != ">":
                while _is_space(at(i)):
                    i += 1
                if at(i) == ">":
                    break
                if at(i) == "":
                    raise EntityParseError(
                        f'Unclosed start tag "{tag}" at byte offset {boff(begin)}'
                    )
                name_start = i
                while at(i) != "" and not _is_space(at(i)) and at(i) not in "=>":
                    i += 1
                name = text[name_start:i].lower()
                if not name:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {boff(begin)}'
                    )
                while _is_space(at(i)):
                    i += 1
                if at(i) != "=":
                    if tag == "blockquote" and name == "expandable":
                        argument = "expandable"
                        continue
                    raise EntityParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {boff(begin)}'
                    )
                i += 1
                while _is_space(at(i)):
                    i += 1
                if at(i) == "":
                    raise EntityParseError(
                        f'Unclosed start tag "{tag}" at byte offset {boff(begin)}'
                    )
                if at(i) in "'\"":
                    quote, value_chars = at(i), []
                    i += 1
                    while at(i) not in ("", quote):
                        char, j = _decode_entity(text, i) if at(i) == "&" else (None, i)
                        value_chars.append(char if char is not None else at(i))
                        i = j if char is not None else i + 1
                    if at(i) == quote:
                        i += 1
                    value = "".join(value_chars)
                else:
                    token_start = i
                    while at(i) != "" and (at(i).isalnum() or at(i) in ".-"):
                        i += 1
                    value = text[token_start:i].lower()
                    if not _is_space(at(i)) and at(i) != ">":
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {boff(token_start)}"
                        )
                if at(i) == "":
                    raise EntityParseError(f"Unclosed start tag at byte offset {boff(begin)}")
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {boff(begin)}'
                )
            stack.append([tag, argument, u16])
            i += 1  # the '>'
            continue
        # End tag: "</name>" or the anonymous "</>" closing the innermost tag.
        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {boff(begin)}")
        while at(i) != "" and not _is_space(at(i)) and at(i) != ">":
            i += 1
        end_name = text[begin + 2 : i].lower()
        while _is_space(at(i)):
            i += 1
        if at(i) != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {boff(begin)}")
        i += 1
        tag, argument, start = stack.pop()
        if end_name and end_name != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {boff(begin)}, expected "</{tag}>", '
                f'found "</{end_name}>"'
            )
        if tag == "code" and argument and stack and stack[-1][0] == "pre" and stack[-1][2] == start:
            stack[-1][1] = argument  # <pre><code class="language-x"> is one pre entity
            continue
        if u16 > start and (entity := _html_entity(tag, argument, start, u16 - start)):
            entities.append(entity)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _html_entity(tag: str, argument: str, offset: int, length: int) -> dict[str, Any] | None:
    entity: dict[str, Any] = {"type": _HTML_TAGS[tag], "offset": offset, "length": length}
    if tag == "a":
        if argument.startswith("tg://user?id=") and argument[13:].isdigit():
            user = {"id": int(argument[13:]), "is_bot": False, "first_name": "User"}
            return {"type": "text_mention", "offset": offset, "length": length, "user": user}
        if not argument:
            return None  # tdlib drops links without a usable URL
        entity["url"] = argument
    elif tag == "pre" and argument:
        entity["language"] = argument
    elif tag == "blockquote" and argument == "expandable":
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        if not argument:
            return None
        entity["custom_emoji_id"] = argument
    return entity


_MD_RESERVED = set("_*[]()~`>#+-=|{}.!\\")
_MD_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
}
_MD_OPEN = {"*": "bold", "__": "underline", "_": "italic", "~": "strikethrough", "||": "spoiler"}


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    """A compact MarkdownV2 parser: escapes, reserved characters, nesting, code, links.

    Covers what bots emit; not tdlib's every corner case (e.g. ``___`` ambiguities,
    custom emoji and ``>`` blockquotes are accepted but produce no entity).
    """
    out: list[str] = []
    u16 = 0
    stack: list[list[Any]] = []  # [type, utf16 start, byte offset, language]
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)

    def emit(s: str) -> None:
        nonlocal u16
        out.append(s)
        u16 += utf16_len(s)

    while i < n:
        c = text[i]
        top = stack[-1][0] if stack else None
        if c == "\\" and i + 1 < n and ord(text[i + 1]) <= 126:
            emit(text[i + 1])
            i += 2
            continue
        if top in ("code", "pre"):
            closer = "```" if top == "pre" else "`"
            if text.startswith(closer, i):
                _, start, _, language = stack.pop()
                entity = {"type": top, "offset": start, "length": u16 - start}
                if language:
                    entity["language"] = language
                if u16 > start:
                    entities.append(entity)
                i += len(closer)
            else:
                emit(c)
                i += 1
            continue
        if (i == 0 or text[i - 1] == "\n") and (c == ">" or text.startswith("**>", i)):
            i += 3 if c == "*" else 1  # blockquote marker
            continue
        token = next((t for t in ("||", "__") if text.startswith(t, i)), c)
        if top and _MD_OPEN.get(token) == top:
            _, start, _, _ = stack.pop()
            if u16 > start:
                entities.append({"type": top, "offset": start, "length": u16 - start})
            i += len(token)
        elif top == "text_link" and c == "]":
            _, start, byte_offset, _ = stack.pop()
            i += 1
            url = ""
            if text.startswith("(", i):
                end = i + 1
                while end < n and text[end] != ")":
                    end += 2 if text[end] == "\\" else 1
                if end >= n:
                    raise EntityParseError(
                        f"Can't find end of a url at byte offset {len(text[:i].encode())}"
                    )
                url = text[i + 1 : end].replace("\\)", ")").replace("\\\\", "\\")
                i = end + 1
            if url and u16 > start and not url.startswith("tg://emoji"):
                entities.append(
                    {"type": "text_link", "offset": start, "length": u16 - start, "url": url}
                )
        elif token in _MD_OPEN or c in "[`" or text.startswith("![", i):
            byte_offset = len(text[:i].encode())
            if text.startswith("```", i):
                end = text.find("\n", i + 3)
                first_line = text[i + 3 : end] if end != -1 else ""
                language = first_line if first_line and " " not in first_line else ""
                stack.append(["pre", u16, byte_offset, language])
                i = i + 3 + (len(first_line) + 1 if language else 0)
            elif c in "[`!":
                stack.append(["code" if c == "`" else "text_link", u16, byte_offset, ""])
                i += 2 if c == "!" else 1
            else:
                stack.append([_MD_OPEN[token], u16, byte_offset, ""])
                i += len(token)
        elif c in _MD_RESERVED:
            raise EntityParseError(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        else:
            emit(c)
            i += 1
    if stack:
        kind, _, byte_offset, _ = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MD_NAMES[kind]} entity at byte offset {byte_offset}"
        )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _strip(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram trims leading/trailing whitespace; entity offsets shift and clip with it."""
    stripped = text.strip(_SPACES)
    if stripped == text:
        return text, entities
    left = utf16_len(text[: len(text) - len(text.lstrip(_SPACES))])
    total = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - left, 0)
        end = min(entity["offset"] + entity["length"] - left, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def render_text(
    text: Any,
    parse_mode: str | None,
    entities: list[dict[str, Any]] | None,
    *,
    strict_amp: bool = True,
    limit: int = MAX_TEXT,
) -> tuple[str, list[dict[str, Any]]]:
    """Validate a message text like sendMessage does; return (visible text, entities)."""
    if not isinstance(text, str) or not text:
        raise ApiError(400, "Bad Request: message text is empty")
    mode = (parse_mode or "").lower()
    try:
        if mode == "html":
            visible, found = parse_html(text, strict_amp=strict_amp)
        elif mode == "markdownv2":
            visible, found = parse_markdown_v2(text)
        elif mode in ("", "none", "markdown"):  # legacy Markdown: accepted, not parsed
            visible, found = text, list(entities or [])
        else:
            raise ApiError(400, "Bad Request: unsupported parse_mode")
    except EntityParseError as err:
        raise ApiError(400, f"Bad Request: can't parse entities: {err}") from None
    visible, found = _strip(visible, found)
    if not visible:
        raise ApiError(400, "Bad Request: message text is empty")
    if len(visible) > limit:  # code points, not UTF-16 units
        raise ApiError(400, "Bad Request: message is too long")
    return visible, found


def retry_after(wait: float) -> int:
    """Telegram's retry_after is a whole number of seconds, at least 1."""
    return max(1, math.ceil(wait - 1e-9))


def too_many_requests(wait: float) -> ApiError:
    seconds = retry_after(wait)
    return ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})


class TokenBucket:
    """``capacity`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float, now: float):
        self.capacity, self.rate = capacity, rate
        self.tokens, self.updated = float(capacity), now

    def wait_time(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self.tokens -= 1


class SlidingWindow:
    """At most ``limit`` requests in any ``period`` seconds."""

    def __init__(self, limit: int, period: float):
        self.limit, self.period = limit, period
        self.stamps: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.period:
            self.stamps.popleft()
        return 0.0 if len(self.stamps) < self.limit else self.stamps[0] + self.period - now

    def take(self, now: float) -> None:
        self.stamps.append(now)


class FloodControl:
    """Telegram's flood limits: per chat a token bucket (sends and edits), per group chat
    (negative id) N per minute and globally N per second (sends only); plus forced waits.
    The attributes may be changed between requests; new buckets pick the new values."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        per_chat_burst: int,
        per_chat_rate: float,
        group_per_minute: int,
        global_per_second: int,
        enforce: bool,
    ):
        self.clock = clock
        self.per_chat_burst, self.per_chat_rate = per_chat_burst, per_chat_rate
        self.group_per_minute, self.global_per_second = group_per_minute, global_per_second
        self.enforce = enforce
        self.forced_until: dict[int, float] = {}
        self._buckets: dict[int, TokenBucket] = {}
        self._groups: dict[int, SlidingWindow] = {}
        self._global = SlidingWindow(global_per_second, 1.0)

    def force(self, chat_id: int, seconds: float) -> None:
        self.forced_until[chat_id] = self.clock() + seconds

    def check_forced(self, chat_id: int) -> None:
        wait = self.forced_until.get(chat_id, 0.0) - self.clock()
        if wait > 0:
            raise too_many_requests(wait)

    def check(self, chat_id: int, *, send: bool) -> None:
        """Raise 429 if over a limit, else count the request against every limit."""
        if not self.enforce:
            return
        now = self.clock()
        if chat_id not in self._buckets:
            self._buckets[chat_id] = TokenBucket(self.per_chat_burst, self.per_chat_rate, now)
        limits: list[TokenBucket | SlidingWindow] = [self._buckets[chat_id]]
        if send:
            if chat_id < 0:
                window = SlidingWindow(self.group_per_minute, 60.0)
                limits.append(self._groups.setdefault(chat_id, window))
            self._global.limit = self.global_per_second
            limits.append(self._global)
        wait = max(limit.wait_time(now) for limit in limits)
        if wait > 0:
            raise too_many_requests(wait)
        for limit in limits:
            limit.take(now)


class ManualClock:
    """A clock for deterministic rate limits: ``FakeTelegram(clock=clock)``; ``advance(s)``."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------- records


@dataclass
class Call:
    """One API request as the fake saw it. status 0: no HTTP answer was sent (drop/timeout)."""

    method: str
    params: dict[str, Any]
    status: int
    at: float  # fake.clock() when answered
    description: str | None = None  # error description, if any
    fault: str | None = None  # injected fault applied to this call
    delivered: bool = True  # False: the client never got the answer (fault or it hung up)


@dataclass
class FakeMessage:
    """Current state of a message the bot sent."""

    chat_id: int
    message_id: int
    text: str  # visible text (entities parsed, trimmed)
    raw_text: str  # as sent
    parse_mode: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    edits: int = 0
    history: list[str] = field(default_factory=list)  # previous visible texts, oldest first
    deleted: bool = False
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    date: int = 0
    edit_date: int | None = None


@dataclass
class Draft:
    """One sendMessageDraft call (Bot API 9.3 streaming preview)."""

    chat_id: int
    draft_id: int
    text: str  # visible
    raw_text: str
    parse_mode: str | None
    message_thread_id: int | None
    at: float


@dataclass
class ChatAction:
    chat_id: int
    action: str
    message_thread_id: int | None
    at: float


# ---------------------------------------------------------------------- Bot API objects

_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")


def default_chat(chat_id: int) -> dict[str, Any]:
    """Chat object for an id never seen inbound: >0 private, -100... supergroup, else group."""
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "User"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}


def full_chat_info(chat: dict[str, Any]) -> dict[str, Any]:
    """getChat result: PTB's ChatFullInfo requires these fields."""
    gifts = "unlimited_gifts limited_gifts unique_gifts premium_subscription gifts_from_channels"
    return {
        **chat,
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": dict.fromkeys(gifts.split(), False),
    }


def inbound_message(
    message_id: int,
    chat_id: int,
    text: str,
    *,
    user_id: int | None,
    username: str | None,
    chat_type: str,
    message_thread_id: int | None,
    entities: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A user's text message. A leading "/command" gets its bot_command entity, as real
    clients send it (PTB's CommandHandler relies on it)."""
    if chat_id < 0 and chat_type == "private":  # a private chat can't have a negative id
        chat_type = default_chat(chat_id)["type"]
    user_id = user_id if user_id is not None else (chat_id if chat_id > 0 else 1001)
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": "Alice"}
    if username:
        user["username"] = username
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat.update({k: v for k, v in user.items() if k in ("first_name", "username")})
    else:
        chat.update({"title": f"Chat {chat_id}", "is_forum": message_thread_id is not None})
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat,
        "from": user,
        "text": text,
    }
    if entities is None and (command := _COMMAND_RE.match(text)):
        entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(command[0])}]
    if entities:
        message["entities"] = entities
    if message_thread_id is not None:
        message["message_thread_id"] = message_thread_id
        message["is_topic_message"] = True
    return message


def message_object(
    m: FakeMessage, chat: dict[str, Any], sender: dict[str, Any], reply: dict[str, Any] | None
) -> dict[str, Any]:
    """The Message object returned for a bot message (enough for PTB's de_json)."""
    data: dict[str, Any] = {
        "message_id": m.message_id,
        "date": m.date,
        "chat": chat,
        "from": sender,
        "text": m.text,
    }
    if m.entities:
        data["entities"] = m.entities
    if m.edit_date is not None:
        data["edit_date"] = m.edit_date
    if m.message_thread_id is not None:
        data["message_thread_id"] = m.message_thread_id
    if reply is not None:
        data["reply_to_message"] = reply
    if m.reply_markup and "inline_keyboard" in m.reply_markup:
        data["reply_markup"] = m.reply_markup  # only inline keyboards are echoed
    return data


def validate_commands(commands: Any) -> list[dict[str, Any]]:
    if not isinstance(commands, list) or len(commands) > 100:
        raise ApiError(400, "Bad Request: can't parse commands JSON object")
    for command in commands:
        name, description = command.get("command", ""), command.get("description", "")
        if not re.fullmatch(r"[a-z0-9_]{1,32}", name) or not 1 <= len(description) <= 256:
            raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
    return commands


# ---------------------------------------------------------------------- HTTP helpers

# Parameters PTB sends JSON-encoded inside form bodies.
_JSON_PARAMS = frozenset(
    "reply_markup entities reply_parameters link_preview_options allowed_updates commands scope"
    " caption_entities".split()
)
_INT_PARAMS = frozenset(
    "chat_id message_id offset limit message_thread_id draft_id reply_to_message_id"
    " max_connections".split()
)
_BOOL_PARAMS = frozenset(
    "disable_notification protect_content drop_pending_updates allow_sending_without_reply"
    " allow_paid_broadcast disable_web_page_preview".split()
)


def param_int(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"Bad Request: {name} is empty")
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def truthy(value: Any) -> bool:
    """Booleans arrive as JSON (true) or form strings ("true")."""
    return value is True or str(value).lower() in ("true", "1")


async def read_params(request: web.Request) -> dict[str, Any]:
    """Query string + form/multipart/JSON body; JSON-encoded fields decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                params.update(await request.json())
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON request body") from None
        else:
            for key, value in (await request.post()).items():
                params[key] = (
                    value
                    if isinstance(value, str)
                    else {"file": value.filename, "data": value.file.read()}
                )
    for key, value in params.items():
        if not isinstance(value, str):
            continue
        if key in _JSON_PARAMS:
            try:
                params[key] = json.loads(value)
            except ValueError:
                raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
        elif key in _INT_PARAMS and re.fullmatch(r"-?\d+", value):
            params[key] = int(value)  # so Call.params["chat_id"] == 42, as with a JSON body
        elif key == "timeout" and re.fullmatch(r"\d+(\.\d*)?", value):
            params[key] = float(value)
        elif key in _BOOL_PARAMS and value in ("true", "false"):
            params[key] = value == "true"
    return params


def drop_connection(request: web.Request) -> web.Response:
    """Close the socket without answering. aiohttp then fails to write the returned response,
    which it treats as a client disconnect; the client sees "server disconnected"."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)
