import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from picobot.config import (
    Config,
    expand_env,
    load_client_config,
    load_config,
    parse_config,
    secrets,
    summary,
)
from picobot.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def error_of(data: object, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return info.value


def test_defaults_are_demo_and_web() -> None:
    config = parse_config(None, {})
    assert config.llm.provider == "demo"
    assert config.channels.enabled() == ["web"]
    assert config.http.port == 8765


def test_shipped_config_yaml_matches_the_defaults() -> None:
    # config.yaml is the reference: it must say what the code does.
    assert load_config(ROOT / "config.yaml", env={}) == Config()


def test_unknown_key_names_its_path() -> None:
    err = error_of({"channels": {"telegram": {"tokne": "x"}}})
    assert err.path == "channels.telegram.tokne"
    assert "unknown key" in str(err)


def test_wrong_type_names_its_path() -> None:
    err = error_of({"http": {"port": "eighty"}})
    assert err.path == "http.port"


def test_missing_token_for_enabled_channel() -> None:
    err = error_of({"channels": {"telegram": {"enabled": True}}})
    assert str(err) == "channels.telegram.token: required when the channel is enabled"


def test_slack_mode_decides_which_secret_is_required() -> None:
    err = error_of(
        {"channels": {"slack": {"enabled": True, "bot_token": "xoxb-1", "mode": "http"}}}
    )
    assert err.path == "channels.slack.signing_secret"


def test_unset_variable_names_the_key() -> None:
    err = error_of({"channels": {"discord": {"token": "${NOPE}"}}})
    assert err.path == "channels.discord.token"
    assert "${NOPE}" in str(err)


def test_variables_and_defaults_expand() -> None:
    env = {"TOKEN": "123:abc", "EMPTY": ""}
    assert expand_env({"a": ["${TOKEN}", "${MISSING:-fallback}", "${EMPTY:-d}"]}, env) == {
        "a": ["123:abc", "fallback", "d"]
    }


def test_web_off_loopback_needs_a_token() -> None:
    err = error_of({"http": {"host": "0.0.0.0"}})
    assert err.path == "channels.web.token"
    token = "t" * 16
    assert parse_config({"http": {"host": "0.0.0.0"}, "channels": {"web": {"token": token}}}, {})


def test_off_loopback_needs_the_token_even_with_the_web_chat_disabled() -> None:
    # /api/status answers whatever channels are enabled.
    err = error_of({"http": {"host": "0.0.0.0"}, "channels": {"web": {"enabled": False}}})
    assert err.path == "channels.web.token"


def test_a_short_web_token_is_refused() -> None:
    err = error_of({"channels": {"web": {"token": "x"}}})
    assert (err.path, err.problem) == ("channels.web.token", "must be at least 16 characters")


def test_a_non_utf8_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("agent:\n  system_prompt: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml is not UTF-8 text \(byte 27\)"):
        load_config(path)


def test_the_client_config_needs_no_channel_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "http: {host: 0.0.0.0, port: 9000}\n"
        "channels:\n"
        "  slack: {enabled: true, bot_token: '${SLACK_BOT_TOKEN}'}\n"
        "  web: {token: '${WEB_TOKEN}'}\n"
    )
    with pytest.raises(ConfigError):
        load_config(path, env={})
    bare = load_client_config(path, env={})
    assert (bare.http.host, bare.http.port, bare.channels.web.token) == ("0.0.0.0", 9000, None)
    config = load_client_config(path, env={"WEB_TOKEN": "w" * 16})
    assert config.channels.web.token is not None
    assert config.channels.web.token.get_secret_value() == "w" * 16


def test_secrets_are_hidden_in_repr_and_summary() -> None:
    config = parse_config(
        {"channels": {"telegram": {"enabled": True, "token": "123456:SECRET-VALUE"}}}, {}
    )
    assert "SECRET-VALUE" not in repr(config)
    assert "SECRET-VALUE" not in summary(config)
    assert "123456:SECRET-VALUE" in secrets(config)


# A commented line that is an example (`# key: value`) or continues one (`#     # more`).
EXAMPLE = re.compile(r"^(\s*)# ((?:\s*[a-z_]+:(?:\s|$)|\s+#).*)$")


def test_commented_examples_in_config_yaml_parse_once_uncommented() -> None:
    lines = (ROOT / "config.yaml").read_text(encoding="utf-8").splitlines()
    uncommented = [EXAMPLE.sub(r"\1\2", line) for line in lines]
    assert sum(a != b for a, b in zip(lines, uncommented, strict=True)) >= 15
    assert isinstance(yaml.safe_load("\n".join(uncommented)), dict)
    # The Telegram webhook example in place, with its variable set, is a valid config.
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    start = text.index("    # webhook:")
    block = text[start : text.index("\n  discord:")]
    text = text.replace(block, "\n".join(EXAMPLE.sub(r"\1\2", b) for b in block.splitlines()))
    env = {"TELEGRAM_WEBHOOK_SECRET": "s3cret", "TELEGRAM_BOT_TOKEN": "1:x"}
    config = parse_config(yaml.safe_load(text), env)
    assert config.channels.telegram.webhook is not None
    assert config.channels.telegram.webhook.secret_token.get_secret_value() == "s3cret"


def test_yaml_errors_keep_the_parsers_detail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("telegram:\n  webhook: {url: https://x, secret_token: ${SECRET}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    assert "\n" not in message and "not valid YAML: line 2, column " in message
    assert "expected" in message and "flow mapping" in message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- a\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)


def test_media_keys_and_their_defaults() -> None:
    config = parse_config({}, env={})
    assert (config.media.max_bytes, config.media.ttl, config.media.vision) == (
        20_000_000,
        7 * 24 * 3600,
        True,
    )
    assert (config.media.max_inline_chars, config.media.voice_replies) == (20_000, False)
    assert (config.stt.model, config.tts.model, config.tts.voice) == (
        "whisper-1",
        "gpt-4o-mini-tts",
        "alloy",
    )
    assert (config.images.enabled, config.images.model, config.images.size) == (
        False,
        "gpt-image-1",
        "1024x1024",
    )
    assert config.channels.telegram.base_file_url == "https://api.telegram.org/file/bot"
    assert not config.stt_enabled  # the demo model: nothing to transcribe with
    openai = {"provider": "openai", "api_key": "k"}
    assert parse_config({"llm": openai}, env={}).stt_enabled
    assert not parse_config({"llm": openai, "stt": {"enabled": False}}, env={}).stt_enabled


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"media": {"max_bytes": 0}}, "media.max_bytes"),
        ({"images": {"size": "huge"}}, "images.size"),
        ({"tts": {"speed": 2}}, "tts.speed: unknown key"),
    ],
)
def test_bad_media_keys_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data, env={})


def test_tuple_keys_are_called_lists() -> None:
    err = error_of({"agent": {"tools": "time"}})
    assert str(err) == "agent.tools: should be a list"


def test_several_problems_are_listed_up_to_five() -> None:
    err = error_of({"http": {"port": "x"}, "agent": {"tools": 1}, "log": {"level": "loud"}})
    assert err.path == "log.level"  # in the order of the config reference
    assert "; http.port: " in str(err) and str(err).endswith("; agent.tools: should be a list")
    many = error_of(
        {
            "llm": {k: "x" for k in ("timeout", "max_retries", "temperature")},
            "http": {"port": "x"},
            "agent": {"tools": 1, "max_tool_iterations": "x"},
            "log": {"level": "x"},
        }
    )
    assert str(many).count("; ") == 4 and str(many).endswith("(and 2 more problems)")


def test_unknown_key_close_to_a_known_one_gets_a_suggestion() -> None:
    err = error_of({"channels": {"telegram": {"tokne": "x"}}})
    assert str(err) == (
        "channels.telegram.tokne: unknown key (did you mean channels.telegram.token?)"
    )
    assert "did you mean" not in str(error_of({"llm": {"zzzz": 1}}))
    assert "did you mean log?" in str(error_of({"logg": {}}))


def test_cluster_is_absent_by_default_and_validated() -> None:
    assert parse_config({}).cluster is None
    cluster = parse_config({"cluster": {"redis_url": "redis://r:6379/1", "node": "a"}}).cluster
    assert cluster is not None and cluster.failover_seconds == 10 and cluster.node == "a"
    with pytest.raises(ConfigError, match=r"cluster\.redis_url"):
        parse_config({"cluster": {"redis_url": "http://x"}})
    with pytest.raises(ConfigError, match=r"cluster\.failover_seconds"):
        parse_config({"cluster": {"failover_seconds": 0}})
    with pytest.raises(ConfigError, match=r"cluster\.nodes"):
        parse_config({"cluster": {"nodes": 3}})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"channels": {"telegram": {"enabled": 1}}}, "channels.telegram.enabled: should be true"),
        ({"http": {"port": 8080.0}}, "http.port: should be a whole number"),
        ({"http": {"port": True}}, "http.port: should be a whole number"),
        ({"http": {"host": 127}}, "http.host: should be text"),
        ({"llm": {"timeout": False}}, "llm.timeout: should be a number"),
        ({"agent": {"tools": ["time", 1]}}, "agent.tools.1: should be text"),
        ({"mcp": {"servers": []}}, "mcp.servers: should be a mapping"),
        ({"http": None}, "http: should be a mapping"),
        (
            {"channels": {"telegram": {"webhook": {"url": "u"}}}},
            "channels.telegram.webhook.secret_token: required",
        ),
        ({"log": {"level": "loud"}}, "log.level: should be 'trace', 'debug', 'info', 'warning'"),
        (
            {"log": {"event_lines_per_second": -1}},
            "log.event_lines_per_second: should be at least 0",
        ),
    ],
)
def test_types_are_strict(data: dict[str, Any], problem: str) -> None:
    assert str(error_of(data)).startswith(problem)


def test_text_may_stand_for_a_number_or_a_switch_as_a_variable_does() -> None:
    env = {"PORT": "8080", "TELEGRAM": "false", "TIMEOUT": "2.5"}
    config = parse_config(
        {
            "http": {"port": "${PORT}"},
            "llm": {"timeout": "${TIMEOUT}"},
            "channels": {"telegram": {"enabled": "${TELEGRAM}"}, "web": {"enabled": "off"}},
        },
        env,
    )
    assert (config.http.port, config.llm.timeout) == (8080, 2.5)
    assert config.channels.enabled() == []  # "false" and "off" are not true
    assert str(error_of({"http": {"port": "80.0"}})) == "http.port: should be a whole number"


def test_models_built_in_code_are_checked_and_hide_their_secrets() -> None:
    from picobot.config import HttpConfig, McpServerConfig, TelegramConfig

    telegram = TelegramConfig(enabled=True, token="123456:SECRET-VALUE")
    assert telegram.token is not None and telegram.token.get_secret_value() == "123456:SECRET-VALUE"
    server = McpServerConfig(url="http://127.0.0.1:9/mcp", headers={"Authorization": "B SECRET"})
    assert "SECRET" not in repr(telegram) + repr(server) + str(telegram.token)
    with pytest.raises(ConfigError, match="port: should be from 0 to 65535"):
        HttpConfig(port=70000)
    with pytest.raises(ConfigError, match="token: required when the channel is enabled"):
        TelegramConfig(enabled=True, token="")
