"""The config models: frozen, keyword-only, `extra=forbid`; defaults as named constants.

Secrets are `SecretStr`: they print as ``**********``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

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


# An empty value (e.g. from ``${TOKEN:-}``) means "not set".
Secret = Annotated[SecretStr | None, BeforeValidator(lambda v: v or None)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    # Host names the page and /api/* answer to besides loopback names and `host` itself
    # (e.g. the name a reverse proxy forwards); a guard against DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()


class LogConfig(_Model):
    # "debug": picobot's own debug lines; "trace": the libraries' too (they may log message
    # text and SQL parameters).
    level: Literal["trace", "debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    content: bool = False  # message text in the logs (off: privacy by default)


class LLMConfig(_Model):
    provider: Literal["demo", "openai"] = "demo"
    base_url: str | None = None
    api_key: Secret = None
    model: str = "gpt-4o-mini"
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    temperature: float | None = None


class AgentConfig(_Model):
    system_prompt: str = "You are picobot, a helpful assistant. Answer concisely."
    max_tool_iterations: int = Field(8, ge=1)
    max_history_messages: int = Field(40, ge=2)
    max_parallel_turns: int = Field(4, ge=1)
    steering_mode: Literal["one-at-a-time", "all"] = "one-at-a-time"
    tools: tuple[str, ...] = ("time", "message", "schedule")
    timezone: str | None = None  # IANA name for cron schedules; None: the host's

    @model_validator(mode="after")
    def _check(self) -> AgentConfig:
        for name in self.tools:
            if name not in KNOWN_TOOLS:
                known = ", ".join(KNOWN_TOOLS)
                raise ValueError(f"tools: unknown tool {name!r} (available: {known})")
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"timezone: unknown timezone {self.timezone!r}; use an IANA name like"
                    " Europe/Paris"
                ) from None
        return self


class McpServerConfig(_Model):
    """One MCP server: a child process (`command`) or a streamable-HTTP endpoint (`url`)."""

    command: tuple[str, ...] | None = None
    env: dict[str, str] = {}
    url: str | None = None
    headers: dict[str, SecretStr] = {}
    tools: tuple[str, ...] | None = None  # allow-list of the server's tool names; None: all
    timeout: float = Field(DEFAULT_MCP_TIMEOUT, gt=0)  # seconds per tool call
    enabled: bool = True

    @model_validator(mode="after")
    def _check(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("command: set exactly one of command (stdio) or url (HTTP)")
        if self.command is not None and not (self.command and self.command[0]):
            raise ValueError("command: must name a program")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        return self


class McpConfig(_Model):
    servers: dict[str, McpServerConfig] = {}

    @model_validator(mode="after")
    def _check(self) -> McpConfig:
        for name in self.servers:
            if not _MCP_NAME.match(name):
                raise ValueError(
                    f"servers: invalid server name {name!r} (letters, digits, _ and -; 1-32)"
                )
        return self


class ScheduleConfig(_Model):
    grace: float = Field(DEFAULT_SCHEDULE_GRACE, ge=0)  # seconds late an entry may still fire
    max_per_chat: int = Field(DEFAULT_MAX_PER_CHAT, ge=1)


class FetchConfig(_Model):
    allow_private: bool = False  # loopback, private and link-local addresses (SSRF guard)


class DispatchConfig(_Model):
    drain_timeout: float = Field(DEFAULT_DRAIN_TIMEOUT, ge=0)
    max_attempts: int = Field(5, ge=1)  # transient failures per chunk before giving up
    max_backoff: float = Field(30.0, gt=0)
    typing_ttl: float = Field(300.0, gt=0)  # a janitor stops typing left running longer
    placeholder_ttl: float = Field(600.0, gt=0)  # ... and removes placeholders older than this


class StreamingConfig(_Model):
    enabled: bool = True
    flush_interval: float | None = Field(None, gt=0)  # None: the channel's own default
    mode: Literal["edit", "draft", "native"] = "edit"
    show_reasoning: bool = False
    tool_progress: bool = False


class PlaceholderConfig(_Model):
    enabled: bool = True
    text: str = Field(DEFAULT_PLACEHOLDER_TEXT, min_length=1)


class ChannelConfig(_Model):
    """Keys every platform channel has."""

    enabled: bool = False
    allow_from: tuple[str, ...] = ()  # ids or @usernames; "*" = everyone; empty = nobody
    group_policy: Literal["mention", "open"] = "mention"
    inbound_rate: int = Field(DEFAULT_INBOUND_RATE, ge=1)  # per sender per minute
    streaming: StreamingConfig = StreamingConfig()
    placeholder: PlaceholderConfig = PlaceholderConfig()

    def _require(self, *names: str) -> None:
        if self.enabled:
            for name in names:
                if not getattr(self, name):
                    raise ValueError(f"{name}: required when the channel is enabled")


class TelegramWebhookConfig(_Model):
    url: str
    secret_token: SecretStr
    path: str = "/webhooks/telegram"


class TelegramConfig(ChannelConfig):
    token: Secret = None
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"  # getFile downloads; token appended
    webhook: TelegramWebhookConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> TelegramConfig:
        self._require("token")
        return self


class DiscordConfig(ChannelConfig):
    token: Secret = None
    allow_guilds: tuple[str, ...] = ()  # empty: any guild
    allow_channels: tuple[str, ...] = ()  # empty: any channel

    @model_validator(mode="after")
    def _check(self) -> DiscordConfig:
        self._require("token")
        return self


class SlackConfig(ChannelConfig):
    bot_token: Secret = None
    app_token: Secret = None
    signing_secret: Secret = None
    mode: Literal["socket", "http"] = "socket"
    base_url: str = "https://slack.com/api/"
    path: str = "/webhooks/slack"

    @model_validator(mode="after")
    def _check(self) -> SlackConfig:
        self._require("bot_token")
        self._require("app_token" if self.mode == "socket" else "signing_secret")
        return self


MIN_TOKEN_LENGTH = 16


def _long_enough(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
    return value


class WebConfig(_Model):
    enabled: bool = True
    # Guards the web chat's /api/* and /api/status (whatever channels are enabled).
    token: Annotated[Secret, AfterValidator(_long_enough)] = None
    max_text: int = Field(16_000, ge=1)
    inbound_rate: int = Field(DEFAULT_INBOUND_RATE, ge=1)  # per web session per minute
    address_rate: int = Field(DEFAULT_ADDRESS_RATE, ge=1)  # per client address per minute


class MediaConfig(_Model):
    max_bytes: int = Field(DEFAULT_MEDIA_MAX_BYTES, ge=1)  # per file, in and out
    ttl: float = Field(DEFAULT_MEDIA_TTL, gt=0)  # seconds a stored file is kept
    vision: bool = True  # images go to the model as image_url parts
    max_inline_chars: int = Field(20_000, ge=0)  # text of documents given to the model
    voice_replies: bool = False  # answer a voice note with a voice note (needs tts)
    # Where files are stored (default: data_dir/media). In cluster mode a folder every node
    # shares (e.g. NFS) lets any node finish a delivery or a turn that carries files.
    dir: Path | None = None


class STTConfig(_Model):
    """Speech to text: an OpenAI-compatible POST /audio/transcriptions."""

    model: str = "whisper-1"
    base_url: str | None = None  # default: llm.base_url
    api_key: Secret = None  # default: llm.api_key
    enabled: bool | None = None  # default: on when llm.provider is openai


class TTSConfig(_Model):
    """Text to speech for voice replies: an OpenAI-compatible POST /audio/speech."""

    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"


class ImagesConfig(_Model):
    """The `generate_image` tool: an OpenAI-compatible POST /images/generations."""

    enabled: bool = False
    model: str = "gpt-image-1"
    size: str = Field("1024x1024", pattern=r"^(auto|\d+x\d+)$")


class ChannelsConfig(_Model):
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    slack: SlackConfig = SlackConfig()
    web: WebConfig = WebConfig()

    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name).enabled]


class ClusterConfig(_Model):
    """Several picobot processes as one bot, over Redis (docs/cluster.md)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    node: str = ""  # empty: "<host name>:<http port>"
    failover_seconds: float = Field(DEFAULT_FAILOVER_SECONDS, ge=1, le=300)

    @model_validator(mode="after")
    def _check(self) -> ClusterConfig:
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url: must start with redis://, rediss:// or unix://")
        if any(c.isspace() for c in self.node):
            raise ValueError("node: must not contain spaces")
        return self


class Config(_Model):
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

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.llm.provider == "openai" and not self.llm.base_url and not self.llm.api_key:
            raise ValueError("llm.api_key: required for provider openai (or set llm.base_url)")
        # /api/status answers whatever channels are enabled: off loopback it needs the token.
        if not is_loopback(self.http.host) and not self.channels.web.token:
            raise ValueError(
                "channels.web.token: required when http.host is not a loopback address"
            )
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
