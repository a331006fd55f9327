"""Where inbound messages enter the core: access control and flood protection, once, for
every channel, before anything reaches the agent (so rejected messages cost no LLM call)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from picobot.config import ChannelConfig, Config
from picobot.core import metrics
from picobot.core.errors import BusClosed
from picobot.core.eventlines import EVENT_LINES
from picobot.core.messages import InboundMessage, Kind, Post, reply_to
from picobot.inbound.limits import KeyedLimits

log = logging.getLogger("picobot.intake")

SLOW_DOWN = "You are sending messages too fast; I'll ignore new ones for a minute."


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Who may talk to the bot on one channel."""

    allow_from: tuple[str, ...] = ("*",)  # ids or @usernames; "*" everyone; empty nobody
    group_policy: str = "mention"  # "mention": groups only when addressed; "open": always
    inbound_rate: int | None = 10  # per sender per minute; None: the channel limits itself
    placeholder: str = ""  # placeholder text; empty for none
    restricted: bool = True  # False: access is checked elsewhere (the web chat's token)

    def allows(self, msg: InboundMessage) -> bool:
        if "*" in self.allow_from:
            return True
        # Case-insensitive on both sides: Slack ids are upper case ("U0ALLOWED").
        sender = msg.sender
        names = {sender.id.lower()}
        if sender.username:
            names |= {sender.username.lower(), "@" + sender.username.lower()}
        return any(a.strip().lower() in names for a in self.allow_from)

    def addressed(self, msg: InboundMessage) -> bool:
        return not msg.is_group or msg.mentioned or self.group_policy == "open"


def policies(config: Config) -> dict[str, Policy]:
    """Each enabled channel's intake policy, from its config.

    Platform channels (`ChannelConfig`) list who may talk; a channel without such a section
    (the web chat: its token decides) lets everyone through the intake.
    """
    result = {}
    for name in config.channels.enabled():
        cfg = getattr(config.channels, name)
        if not isinstance(cfg, ChannelConfig):
            # The web chat: its token decides, and it limits per session and address itself.
            result[name] = Policy(restricted=False, inbound_rate=None)
            continue
        result[name] = Policy(
            allow_from=cfg.allow_from,
            group_policy=cfg.group_policy,
            inbound_rate=cfg.inbound_rate,
            placeholder=cfg.placeholder.text if cfg.placeholder.enabled else "",
        )
    return result


class FloodGuard:
    """Per-sender rate: over it, the sender is told once, then ignored until the window passes.
    (Each channel has one rate; a new guard is made when one changes.)"""

    def __init__(self) -> None:
        self._senders: dict[str, KeyedLimits[str]] = {}  # by channel
        self._warned: set[tuple[str, str]] = set()

    async def check(self, msg: InboundMessage, per_minute: int) -> str:
        """'ok', 'warn' (first message over the rate) or 'drop'."""
        senders = self._senders.get(msg.channel)
        if senders is None:
            forget = functools.partial(_forget, self._warned, msg.channel)
            senders = self._senders[msg.channel] = KeyedLimits(per_minute, on_forget=forget)
        bucket = senders.bucket(msg.sender.id)
        key = (msg.channel, msg.sender.id)
        if bucket.has_capacity():
            await bucket.acquire()  # has capacity: does not wait
            self._warned.discard(key)
            return "ok"
        if key in self._warned:
            return "drop"
        self._warned.add(key)
        return "warn"


def _forget(warned: set[tuple[str, str]], channel: str, sender: str) -> None:
    warned.discard((channel, sender))


class InboundQueue(Protocol):
    """Where accepted messages go: the local inbound topic, or the cluster's streams."""

    @property
    def closed(self) -> bool: ...

    async def publish(self, msg: InboundMessage) -> None: ...


class Intake:
    """The sink every channel hands its inbound messages to.

    `announce`: post the placeholder here (True), or leave it to whoever runs the turn (the
    partition's owner in cluster mode, through `announce()`).
    """

    def __init__(
        self,
        inbound: InboundQueue,
        post: Post,
        policies: Mapping[str, Policy],
        *,
        seen: Callable[[InboundMessage], Awaitable[bool]] | None = None,
        announce: bool = True,
    ) -> None:
        self._inbound = inbound
        self._announce_here = announce
        self._post = post
        self._policies = dict(policies)
        self._seen = seen  # records the message durably; True for a replayed platform event
        self._flood = FloodGuard()

    def update(self, policies: Mapping[str, Policy]) -> None:
        """Apply new policies at once (a reload); per-sender rates restart if a rate changed."""
        if any(
            p.inbound_rate != getattr(self._policies.get(n), "inbound_rate", None)
            for n, p in policies.items()
        ):
            self._flood = FloodGuard()  # per-sender buckets are built with the rate
        self._policies = dict(policies)

    def summary(self) -> dict[str, dict[str, object]]:
        """Per platform channel: how many senders are allowed (a count, never the ids)."""
        return {
            name: {
                "allowed": "everyone" if "*" in p.allow_from else len(p.allow_from),
                "inbound_rate": p.inbound_rate,
            }
            for name, p in self._policies.items()
            if p.restricted
        }

    async def __call__(self, msg: InboundMessage) -> None:
        """Accept or drop `msg`.

        :raises BusClosed: while shutting down (the message was not accepted).
        """
        if self._inbound.closed:
            # Raise, so the channel withholds its ack and the platform redelivers it later.
            raise BusClosed("shutting down: not accepting messages")
        policy = self._policies.get(msg.channel)
        if policy is None or not policy.allows(msg):
            if EVENT_LINES.take(log):
                log.info(
                    "ignored %s:%s from unauthorised sender %s",
                    *(msg.channel, msg.chat_id, msg.sender.id),
                )
            metrics.INBOUND.labels(msg.channel, "unauthorised").inc()
            return
        if not policy.addressed(msg):
            metrics.INBOUND.labels(msg.channel, "not_addressed").inc()
            return
        rate = policy.inbound_rate
        verdict = "ok" if rate is None else await self._flood.check(msg, rate)
        if verdict != "ok":
            metrics.INBOUND.labels(msg.channel, "flood").inc()
            if verdict == "warn":
                if EVENT_LINES.take(log):
                    log.info(
                        "flood protection: %s:%s sender %s",
                        *(msg.channel, msg.chat_id, msg.sender.id),
                    )
                await self._post(reply_to(msg, SLOW_DOWN))
            return
        if self._seen is not None and await self._seen(msg):
            if EVENT_LINES.take(log):
                log.info("ignored a replayed event in %s:%s (%s)", msg.channel, msg.chat_id, msg.id)
            metrics.INBOUND.labels(msg.channel, "replayed").inc()
            return
        metrics.child(metrics.INBOUND, msg.channel, "accepted").inc()
        if EVENT_LINES.take(log):  # first: no arguments built for a line left out
            log.info(
                "message %s in %s from %s (%d chars)",
                msg.id,
                msg.session_key,
                msg.sender.id,
                len(msg.text),
                extra={"content": msg.text},
            )
        if self._announce_here:
            # Before the agent sees the message, so the placeholder precedes any reply in the lane.
            await self.announce(msg)
        await self._inbound.publish(msg)

    async def announce(self, msg: InboundMessage) -> None:
        """Post the ACCEPTED marker (typing, the placeholder) for an accepted message."""
        policy = self._policies.get(msg.channel)
        await self._post(reply_to(msg, policy.placeholder if policy else "", kind=Kind.ACCEPTED))
