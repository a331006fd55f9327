"""Telegram's webhook calls: secret checked, update handed over, then the answer (our ack)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from telegram import Bot, Update

from picobot.core.errors import BusClosed

log = logging.getLogger("picobot.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def handle_webhook(
    request: web.Request,
    secret: str,
    bot: Bot | None,
    deliver: Callable[[Update], Awaitable[None]],
) -> web.Response:
    """403 on a wrong secret; 503 while intake is closed (`bot` None), so Telegram retries."""
    given = request.headers.get(SECRET_HEADER, "").encode()
    if not hmac.compare_digest(given, secret.encode()):
        log.warning("telegram: webhook call with a wrong or missing secret token")
        return web.Response(status=403)
    if bot is None:
        return web.Response(status=503)  # Telegram delivers it again later
    try:
        update = Update.de_json(await request.json(), bot)
    except Exception as exc:
        log.warning("telegram: unreadable webhook update: %s", exc)
        return web.Response(status=400)
    try:
        await deliver(update)  # answered only once the sink has it: our ack
    except BusClosed:
        return web.Response(status=503)
    return web.Response()
