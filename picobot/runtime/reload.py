"""SIGHUP: apply a new config without a restart where that is safe.

Channels whose config changed are stopped and started again with it; the others keep running.
Intake policies (access lists, rates, placeholder text) change in place. Sections that shape
objects built once at startup are logged as "restart required" and keep their old values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

import channels as channel_registry
from picobot.config import Config, secrets
from picobot.core.errors import ConfigError
from picobot.core.channel import Channel, State
from picobot.inbound.intake import policies
from picobot.runtime.logs import add_secrets

if TYPE_CHECKING:
    from picobot.runtime.daemon import Daemon

log = logging.getLogger("picobot")

POLICY_KEYS = frozenset({"allow_from", "group_policy", "inbound_rate", "placeholder"})
# Sections a reload does not apply (they shape objects built once at startup).
RESTART_SECTIONS = ("data_dir", "log", "http", "llm", "agent", "dispatch")


def check(old: Config, new: Config) -> None:
    """Refuse what a reload must not half-apply: the HTTP server (bound once) and the web
    token (checked for every /api/* call) are fixed until a restart, so a new file that
    changes them is refused as a whole, never applied in part: a reload cannot widen access.

    :raises ConfigError: naming the changed key.
    """
    for key in type(old.http).model_fields:
        if getattr(old.http, key) != getattr(new.http, key):
            raise ConfigError(f"http.{key}", "changed: restart required (nothing was reloaded)")
    if old.channels.web.token != new.channels.web.token:
        raise ConfigError(
            "channels.web.token", "changed: restart required (nothing was reloaded)"
        )


async def apply(daemon: Daemon, new: Config) -> list[str]:
    """Apply `new`: restart the channels whose config changed, update intake policies.

    Channels whose config did not change keep running, and running turns are not cut (the
    agent loop is untouched; replies in flight go to the channel running under that name).
    Sections built once at startup (see `RESTART_SECTIONS`) are logged as "restart required"
    and keep their old values. Returns a description of each change applied.
    """
    old, applied = daemon.config, []
    for section in RESTART_SECTIONS:
        if getattr(old, section) != getattr(new, section):
            log.warning("reload: %s changed: restart required to apply it", section)
    add_secrets(secrets(new.channels))  # a new token must be redacted from now on
    new_policies = policies(new)
    if any(
        p.inbound_rate != getattr(daemon._policies.get(n), "inbound_rate", None)
        for n, p in new_policies.items()
    ):
        daemon.intake.reset_flood()  # per-sender buckets are built with the rate
    daemon._policies.clear()
    daemon._policies.update(new_policies)
    for name in type(new.channels).model_fields:
        before, after = getattr(old.channels, name), getattr(new.channels, name)
        if before == after:
            continue
        if before.enabled == after.enabled and _same_but_policy(before, after):
            applied.append(f"{name}: intake policy updated")
            continue
        await restart_channel(daemon, name, after)
        applied.append(f"{name}: {'restarted' if after.enabled else 'stopped'}")
    # Keep the startup-only sections as they were: they were not applied.
    daemon.config = new.model_copy(update={s: getattr(old, s) for s in RESTART_SECTIONS})
    return applied


async def restart_channel(daemon: Daemon, name: str, config: Any) -> None:
    """Stop the running `name` (if any) and start a new one with `config` (if enabled)."""
    channel: Channel | None = None
    if config.enabled:
        try:
            channel = channel_registry.load(name)(config, daemon.intake)
        except ImportError as exc:
            log.error("channel %s is not available: %s", name, exc)
        else:
            if (bind := getattr(channel, "bind", None)) is not None:
                bind(daemon)
            # The router is fixed once serving: a route that was not mounted at startup
            # (a newly enabled webhook or web chat, a changed path) waits for a restart.
            for route in channel.http_routes():
                if isinstance(route, web.RouteDef) and (
                    (name, route.method, route.path) not in daemon._mounted
                ):
                    log.warning(
                        "reload: %s serves %s %s only after a restart",
                        name,
                        route.method,
                        route.path,
                    )
    # A retry still trying to start the old instance must not bring it back after its stop.
    for task in [t for t in daemon._tasks if t.get_name() == f"start {name}"]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        daemon._tasks.remove(task)
    old = daemon.channels.get(name)
    if old is not None:
        try:
            await old.stop()
        except Exception as exc:
            log.warning("channel %s did not stop cleanly: %s", name, exc)
        old.set_state(State.STOPPED)
    if channel is None:
        daemon.channels.pop(name, None)
        log.info("channel %s stopped", name)
        return
    # Replaced, never removed: the dispatcher refuses replies for a channel it does not know.
    daemon.channels[name] = channel
    await daemon._start_channel(name, channel)
    log.info("channel %s restarted: %s", name, channel.state.value)


def _same_but_policy(before: Any, after: Any) -> bool:
    return bool(before.model_dump(exclude=POLICY_KEYS) == after.model_dump(exclude=POLICY_KEYS))
