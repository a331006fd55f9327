"""The config models: frozen, keyword-only attrs classes; defaults as named constants.

Reading a file into them (strict types, unknown keys refused) is `validation.py`'s part. Each
field's checks run whenever a model is built; checks across fields run in
`__attrs_post_init__`. Secrets are `Secret`: they print as ``**********``.
"""

import ipaddress
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from attrs import field, frozen

from picobot.config.fields import (
    Secret,
    above,
    at_least,
    between,
    check,
    each,
    not_empty,
    optional_secret,
    secret,
    secrets_of,
    starts_with,
)
from picobot.core.errors import ConfigError
from picobot.core.eventlines import DEFAULT_PER_SECOND

DEFAULT_PORT = 8765
DEFAULT_INBOUND_RATE = 10  # messages per sender per minute
DEFAULT_ADDRESS_RATE = 30  # web chat messages per client address per minute
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_PLACEHOLDER_TEXT = "Thinking…"
DEFAULT_FAILOVER_SECONDS = 10.0
# Every tool name `agent.tools` may list; `picobot check` and `run` refuse any other.
KNOWN_TOOLS = ("time", "message", "schedule", "fetch")
DEFAULT_MCP_TIMEOUT = 30.0
DEFAULT_SCHEDULE_GRACE = 3600.0
DEFAULT_MAX_PER_CHAT = 50
_MCP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEFAULT_MEDIA_MAX_BYTES = 20_000_000  # MB = 10⁶ bytes
DEFAULT_MEDIA_TTL = 7 * 24 * 3600.0


@frozen(kw_only=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = field(default=DEFAULT_PORT, validator=between(0, 65535))
    # Host names the page and /api/* answer to besides loopback names and `host` itself
    # (e.g. the name a reverse proxy forwards); a guard against DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()


@frozen(kw_only=True)
class LogConfig:
    # "debug": picobot's own debug lines; "trace": the libraries' too (they may log message
    # text and SQL parameters).
    level: Literal["trace", "debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    content: bool = False  # message text in the logs (off: privacy by default)
    # Info lines of events (message, turn, reply, command) a second; past it they are counted.
    event_lines_per_second: int = field(default=DEFAULT_PER_SECOND, validator=at_least(0))


@frozen(kw_only=True)
class LLMConfig:
    provider: Literal["demo", "openai"] = "demo"
    base_url: str | None = None
    api_key: Secret | None = field(default=None, converter=optional_secret)
    model: str = "gpt-4o-mini"
    timeout: float = field(default=60.0, validator=above(0))
    max_retries: int = field(default=2, validator=between(0, 10))
    temperature: float | None = None


def _unknown_tool(name: str) -> str | None:
    if name in KNOWN_TOOLS:
        return None
    return f"unknown tool {name!r} (available: {', '.join(KNOWN_TOOLS)})"


def _unknown_timezone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone {name!r}; use an IANA name like Europe/Paris"
    return None


@frozen(kw_only=True)
class AgentConfig:
    system_prompt: str = "You are picobot, a helpful assistant. Answer concisely."
    max_tool_iterations: int = field(default=8, validator=at_least(1))
    max_history_messages: int = field(default=40, validator=at_least(2))
    max_parallel_turns: int = field(default=4, validator=at_least(1))
    steering_mode: Literal["one-at-a-time", "all"] = "one-at-a-time"
    tools: tuple[str, ...] = field(
        default=("time", "message", "schedule"), validator=each(_unknown_tool)
    )
    # IANA name for cron schedules; None: the host's
    timezone: str | None = field(default=None, validator=check(_unknown_timezone))


def _no_program(command: tuple[str, ...]) -> str | None:
    return None if command and command[0] else "must name a program"


def _bad_server_name(name: str) -> str | None:
    if _MCP_NAME.match(name):
        return None
    return f"invalid server name {name!r} (letters, digits, _ and -; 1-32)"


@frozen(kw_only=True)
class McpServerConfig:
    """One MCP server: a child process (`command`) or a streamable-HTTP endpoint (`url`)."""

    command: tuple[str, ...] | None = field(default=None, validator=check(_no_program))
    env: dict[str, str] = field(factory=dict)
    url: str | None = field(default=None, validator=starts_with("http://", "https://"))
    headers: dict[str, Secret] = field(factory=dict, converter=secrets_of)
    tools: tuple[str, ...] | None = None  # allow-list of the server's tool names; None: all
    timeout: float = field(default=DEFAULT_MCP_TIMEOUT, validator=above(0))  # s per tool call
    enabled: bool = True

    def __attrs_post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ConfigError("command", "set exactly one of command (stdio) or url (HTTP)")


@frozen(kw_only=True)
class McpConfig:
    servers: dict[str, McpServerConfig] = field(factory=dict, validator=each(_bad_server_name))


@frozen(kw_only=True)
class ScheduleConfig:
    # seconds late an entry may still fire
    grace: float = field(default=DEFAULT_SCHEDULE_GRACE, validator=at_least(0))
    max_per_chat: int = field(default=DEFAULT_MAX_PER_CHAT, validator=at_least(1))


@frozen(kw_only=True)
class FetchConfig:
    allow_private: bool = False  # loopback, private and link-local addresses (SSRF guard)


@frozen(kw_only=True)
class DispatchConfig:
    drain_timeout: float = field(default=DEFAULT_DRAIN_TIMEOUT, validator=at_least(0))
    # transient failures per chunk before giving up
    max_attempts: int = field(default=5, validator=at_least(1))
    max_backoff: float = field(default=30.0, validator=above(0))
    # a janitor stops typing left running longer
    typing_ttl: float = field(default=300.0, validator=above(0))
    # ... and removes placeholders older than this
    placeholder_ttl: float = field(default=600.0, validator=above(0))


@frozen(kw_only=True)
class StreamingConfig:
    enabled: bool = True
    # None: the channel's own default
    flush_interval: float | None = field(default=None, validator=above(0))
    mode: Literal["edit", "draft", "native"] = "edit"
    show_reasoning: bool = False
    tool_progress: bool = False


@frozen(kw_only=True)
class PlaceholderConfig:
    enabled: bool = True
    text: str = field(default=DEFAULT_PLACEHOLDER_TEXT, validator=not_empty)


@frozen(kw_only=True)
class ChannelConfig:
    """Keys every platform channel has."""

    enabled: bool = False
    allow_from: tuple[str, ...] = ()  # ids or @usernames; "*" = everyone; empty = nobody
    group_policy: Literal["mention", "open"] = "mention"
    # per sender per minute
    inbound_rate: int = field(default=DEFAULT_INBOUND_RATE, validator=at_least(1))
    streaming: StreamingConfig = StreamingConfig()
    placeholder: PlaceholderConfig = PlaceholderConfig()

    def _require(self, *names: str) -> None:
        if self.enabled:
            for name in names:
                if not getattr(self, name):
                    raise ConfigError(name, "required when the channel is enabled")


@frozen(kw_only=True)
class TelegramWebhookConfig:
    url: str
    secret_token: Secret = field(converter=secret)
    path: str = "/webhooks/telegram"


@frozen(kw_only=True)
class TelegramConfig(ChannelConfig):
    token: Secret | None = field(default=None, converter=optional_secret)
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"  # getFile downloads; token appended
    webhook: TelegramWebhookConfig | None = None

    def __attrs_post_init__(self) -> None:
        self._require("token")


@frozen(kw_only=True)
class DiscordConfig(ChannelConfig):
    token: Secret | None = field(default=None, converter=optional_secret)
    allow_guilds: tuple[str, ...] = ()  # empty: any guild
    allow_channels: tuple[str, ...] = ()  # empty: any channel

    def __attrs_post_init__(self) -> None:
        self._require("token")


@frozen(kw_only=True)
class SlackConfig(ChannelConfig):
    bot_token: Secret | None = field(default=None, converter=optional_secret)
    app_token: Secret | None = field(default=None, converter=optional_secret)
    signing_secret: Secret | None = field(default=None, converter=optional_secret)
    mode: Literal["socket", "http"] = "socket"
    base_url: str = "https://slack.com/api/"
    path: str = "/webhooks/slack"

    def __attrs_post_init__(self) -> None:
        self._require("bot_token")
        self._require("app_token" if self.mode == "socket" else "signing_secret")


MIN_TOKEN_LENGTH = 16


def _short(value: Secret) -> str | None:
    if len(value) < MIN_TOKEN_LENGTH:
        return f"must be at least {MIN_TOKEN_LENGTH} characters"
    return None


@frozen(kw_only=True)
class WebConfig:
    enabled: bool = True
    # Guards the web chat's /api/* and /api/status (whatever channels are enabled).
    token: Secret | None = field(default=None, converter=optional_secret, validator=check(_short))
    max_text: int = field(default=16_000, validator=at_least(1))
    # per web session per minute
    inbound_rate: int = field(default=DEFAULT_INBOUND_RATE, validator=at_least(1))
    # per client address per minute
    address_rate: int = field(default=DEFAULT_ADDRESS_RATE, validator=at_least(1))


@frozen(kw_only=True)
class MediaConfig:
    # per file, in and out
    max_bytes: int = field(default=DEFAULT_MEDIA_MAX_BYTES, validator=at_least(1))
    ttl: float = field(default=DEFAULT_MEDIA_TTL, validator=above(0))  # s a stored file is kept
    vision: bool = True  # images go to the model as image_url parts
    # text of documents given to the model
    max_inline_chars: int = field(default=20_000, validator=at_least(0))
    voice_replies: bool = False  # answer a voice note with a voice note (needs tts)
    # Where files are stored (default: data_dir/media). In cluster mode a folder every node
    # shares (e.g. NFS) lets any node finish a delivery or a turn that carries files.
    dir: Path | None = None


@frozen(kw_only=True)
class STTConfig:
    """Speech to text: an OpenAI-compatible POST /audio/transcriptions."""

    model: str = "whisper-1"
    base_url: str | None = None  # default: llm.base_url
    # default: llm.api_key
    api_key: Secret | None = field(default=None, converter=optional_secret)
    enabled: bool | None = None  # default: on when llm.provider is openai


@frozen(kw_only=True)
class TTSConfig:
    """Text to speech for voice replies: an OpenAI-compatible POST /audio/speech."""

    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"


def _image_size(size: str) -> str | None:
    if re.fullmatch(r"auto|\d+x\d+", size):
        return None
    return "should be auto or WIDTHxHEIGHT, e.g. 1024x1024"


@frozen(kw_only=True)
class ImagesConfig:
    """The `generate_image` tool: an OpenAI-compatible POST /images/generations."""

    enabled: bool = False
    model: str = "gpt-image-1"
    size: str = field(default="1024x1024", validator=check(_image_size))


@frozen(kw_only=True)
class ChannelsConfig:
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    slack: SlackConfig = SlackConfig()
    web: WebConfig = WebConfig()

    def enabled(self) -> list[str]:
        return [name for name in attrs.fields_dict(type(self)) if getattr(self, name).enabled]


def _spaces(node: str) -> str | None:
    return "must not contain spaces" if any(c.isspace() for c in node) else None


@frozen(kw_only=True)
class ClusterConfig:
    """Several picobot processes as one bot, over Redis (docs/cluster.md)."""

    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        validator=starts_with("redis://", "rediss://", "unix://"),
    )
    node: str = field(default="", validator=check(_spaces))  # empty: "<host name>:<http port>"
    failover_seconds: float = field(default=DEFAULT_FAILOVER_SECONDS, validator=between(1, 300))


@frozen(kw_only=True)
class Config:
    data_dir: Path = Path("./data")
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    llm: LLMConfig = LLMConfig()
    agent: AgentConfig = AgentConfig()
    dispatch: DispatchConfig = DispatchConfig()
    channels: ChannelsConfig = ChannelsConfig()
    mcp: McpConfig = McpConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    fetch: FetchConfig = FetchConfig()
    media: MediaConfig = MediaConfig()
    stt: STTConfig = STTConfig()
    tts: TTSConfig = TTSConfig()
    images: ImagesConfig = ImagesConfig()
    cluster: ClusterConfig | None = None  # absent: one process, SQLite

    @property
    def stt_enabled(self) -> bool:
        return self.stt.enabled if self.stt.enabled is not None else self.llm.provider == "openai"

    def __attrs_post_init__(self) -> None:
        if attrs.validators.get_disabled():
            return  # `load_client_config`: only the sections a client needs were read
        if self.llm.provider == "openai" and not self.llm.base_url and not self.llm.api_key:
            raise ConfigError("llm.api_key", "required for provider openai (or set llm.base_url)")
        # /api/status answers whatever channels are enabled: off loopback it needs the token.
        if not is_loopback(self.http.host) and not self.channels.web.token:
            raise ConfigError(
                "channels.web.token", "required when http.host is not a loopback address"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
