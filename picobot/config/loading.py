"""Reading the config: YAML with ``${VAR}`` / ``${VAR:-default}``, validated into the models.

The file is read once (in `cli.py`); everything below receives these immutable objects.
Every error names the dotted key path, e.g. ``channels.telegram.token: required when enabled``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from picobot.config.fields import Secret
from picobot.config.models import (
    ChannelsConfig,
    Config,
    HttpConfig,
    WebConfig,
)
from picobot.config.validation import structure
from picobot.core.errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree.

    :raises ConfigError: naming the key path when a ``${VAR}`` without default is unset.
    """
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] or default is None):
            return env[name]
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable ${{{name}}} is not set")

    return _VAR.sub(substitute, value)


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML document (``None`` means all defaults).

    :raises ConfigError: naming the key path of each problem (up to `MAX_PROBLEMS`).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", "the config file must be a mapping of keys to values")
    return structure(expand_env(data, os.environ if env is None else env), Config)


def load_config(
    path: str | Path | None, env: Mapping[str, str] | None = None, *, empty_ok: bool = True
) -> Config:
    """Read and validate a config file; ``None`` gives the defaults (demo model, web chat).
    An empty file means the defaults too, unless not `empty_ok` (a reload: a truncated file
    must not switch every channel off).

    :raises ConfigError: if the file is missing, not YAML, or invalid.
    """
    if path is None:
        return parse_config({}, env)
    data = _read_yaml(path)
    if data is None and not empty_ok:
        raise ConfigError("", f"{path} is empty (a reload needs the whole config)")
    return parse_config(data, env)


def _read_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {_yaml_detail(exc)}") from None


def load_client_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Only what a client of the running daemon needs (`picobot status`): the ``http`` section
    and the web token. Other sections, and their ``${VAR}``s, are not read, so a shell without
    the channels' secrets can still ask.

    :raises ConfigError: if the file is unreadable or those sections are invalid.
    """
    data = {} if path is None else _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("", "the config file must be a mapping of keys to values")
    env = os.environ if env is None else env
    http = expand_env(data.get("http") or {}, env, "http")
    web = (data.get("channels") or {}).get("web") or {}
    token = web.get("token") if isinstance(web, dict) else None
    try:  # an unset ${VAR} for the token: ask without it (the daemon may be on loopback)
        token = expand_env(token, env, "channels.web.token")
    except ConfigError:
        token = None
    http_config = structure(http, HttpConfig, "http")
    web_config = structure({"token": token}, WebConfig, "channels.web")
    with attrs.validators.disabled():  # not checked as a whole: the rest was not read
        return Config(http=http_config, channels=ChannelsConfig(web=web_config))


def _yaml_detail(exc: yaml.YAMLError) -> str:
    """The parser's own account on one line: where, what was expected, and in what."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).replace("\n", " ")
    mark, problem = exc.problem_mark, exc.problem or "syntax error"
    detail = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
    if exc.context:
        start = exc.context_mark
        where = f" started at line {start.line + 1}, column {start.column + 1}" if start else ""
        detail += f" ({exc.context}{where})"
    return detail


def summary(config: Config) -> str:
    """A short, secret-free description for `picobot check` and the logs."""
    enabled = config.channels.enabled()
    model = "demo (offline)" if config.llm.provider == "demo" else config.llm.model
    return (
        f"channels: {', '.join(enabled) or 'none'}; llm: {model}; "
        f"http: {config.http.host}:{config.http.port}; data_dir: {config.data_dir}; "
        f"tools: {', '.join(config.agent.tools) or 'none'}"
        + (f"; mcp: {', '.join(config.mcp.servers)}" if config.mcp.servers else "")
        + (f"; cluster node {config.cluster.node or '(host name)'}" if config.cluster else "")
    )


def secrets(config: attrs.AttrsInstance) -> list[str]:
    """Every secret value in the config, for the log redaction filter."""
    found: list[str] = []
    for field in attrs.fields(type(config)):
        value = getattr(config, field.name)
        for item in value.values() if isinstance(value, dict) else (value,):
            if isinstance(item, Secret):
                found.append(item.get_secret_value())
            elif attrs.has(type(item)):
                found += secrets(item)
    return found
