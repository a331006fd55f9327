"""Slack usernames of senders (users.info, once per user), so ``allow_from`` can list
``@username`` as well as user ids."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace

from slack_sdk.web.async_client import AsyncWebClient

from channels.slack_errors import translate_errors
from channels.slack_events import remember
from picobot.core.errors import Forbidden, PermanentError
from picobot.core.messages import Sender

log = logging.getLogger("picobot.slack")


class Usernames:
    """A bounded cache of user id -> username. Without the `users:read` scope there are no
    usernames (asked once), and ``allow_from`` matches ids only."""

    def __init__(self) -> None:
        self._names: OrderedDict[str, str] = OrderedDict()
        self._unavailable = False  # users.info refused for good

    async def named(self, web: AsyncWebClient, sender: Sender) -> Sender:
        """`sender` with their Slack username, if they have one.

        :raises TransientError: the lookup failed for now (the event is not acknowledged).
        """
        name = self._names.get(sender.id)
        if name is None and not self._unavailable:
            user: object = None
            try:
                with translate_errors():
                    user = (await web.users_info(user=sender.id)).get("user")
            except Forbidden as exc:  # missing_scope, ...: do not ask again
                self._unavailable = True
                log.warning("slack: no usernames (%s); allow_from matches user ids only", exc)
                return sender
            except PermanentError as exc:  # user_not_found, ...
                log.info("slack: no username for %s (%s)", sender.id, exc)
            name = str(user.get("name") or "") if isinstance(user, dict) else ""
            remember(self._names, sender.id, name)
        return replace(sender, username=name or None)
