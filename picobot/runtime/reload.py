"""SIGHUP: apply a new config without a restart where that is safe.

Channels whose config changed are stopped and started again with it; the others keep running.
Intake policies (access lists, rates, placeholder text) change in place. Sections that shape
objects built once at startup are logged as "restart required" and keep their old values. A
file that changes who may reach the server (``http``, the web token) is refused as a whole
(`check`): a reload never widens access.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from picobot.config import ChannelConfig, Config, secrets
from picobot.core.errors import ConfigError
from picobot.inbound.intake import Intake, policies
from picobot.runtime.logs import add_secrets
from picobot.runtime.supervisor import ChannelSupervisor

log = logging.getLogger("picobot")

POLICY_KEYS = frozenset({"allow_from", "group_policy", "inbound_rate", "placeholder"})
# Sections a reload does not apply (they shape objects built once at startup).
RESTART_SECTIONS = (
    "data_dir",
    "log",
    "http",
    "llm",
    "agent",
    "dispatch",
    "schedule",
    "fetch",
    "media",
    "stt",
    "tts",
    "images",
)


def check(old: Config, new: Config) -> None:
    """Refuse what a reload must not half-apply: the HTTP server (bound once) and the web
    token (checked for every /api/* call) are fixed until a restart, so a new file that
    changes them is refused as a whole, never applied in part: a reload cannot widen access.

    :raises ConfigError: naming the changed key.
    """
    for key in attrs.fields_dict(type(old.http)):
        if getattr(old.http, key) != getattr(new.http, key):
            raise ConfigError(f"http.{key}", "changed: restart required (nothing was reloaded)")
    if old.channels.web.token != new.channels.web.token:
        raise ConfigError("channels.web.token", "changed: restart required (nothing was reloaded)")


async def apply(
    old: Config, new: Config, supervisor: ChannelSupervisor, intake: Intake
) -> tuple[list[str], Config]:
    """Apply `new`: restart the channels whose config changed, update intake policies.

    Channels whose config did not change keep running, and running turns are not cut (the
    agent loop is untouched; replies in flight go to the channel running under that name).
    Sections built once at startup (see `RESTART_SECTIONS`) are logged as "restart required"
    and keep their old values. Returns a description of each change applied, and the config
    now in effect.
    """
    applied: list[str] = []
    for section in RESTART_SECTIONS:
        if getattr(old, section) != getattr(new, section):
            log.warning("reload: %s changed: restart required to apply it", section)
    add_secrets(secrets(new.channels))  # a new token must be redacted from now on
    intake.update(policies(new))
    for name in attrs.fields_dict(type(new.channels)):
        before, after = getattr(old.channels, name), getattr(new.channels, name)
        if before == after:
            continue
        # The web chat applies its own rates (`channels.web.inbound_rate`): it is restarted.
        policy_only = isinstance(before, ChannelConfig) and _same_but_policy(before, after)
        if before.enabled == after.enabled and policy_only:
            applied.append(f"{name}: intake policy updated")
            continue
        await supervisor.replace(name, after)
        applied.append(f"{name}: {'restarted' if after.enabled else 'stopped'}")
    # Keep the startup-only sections as they were: they were not applied.
    effective = attrs.evolve(new, **{s: getattr(old, s) for s in RESTART_SECTIONS})
    return applied, effective


def _same_but_policy(before: Any, after: Any) -> bool:
    def but_policy(config: Any) -> dict[str, Any]:
        return attrs.asdict(config, recurse=False, filter=lambda a, _: a.name not in POLICY_KEYS)

    return but_policy(before) == but_policy(after)
