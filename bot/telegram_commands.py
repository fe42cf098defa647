"""`shopbot telegram poll | worker | set-webhook URL | delete-webhook`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from telegram import Bot
from telegram.error import InvalidToken, NetworkError

from bot.errors import UserError
from bot.settings import Settings

log = logging.getLogger("shopbot")


def telegram(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.secrets.telegram_bot_token:
        raise UserError("set TELEGRAM_BOT_TOKEN to the token BotFather gave you")
    if args.telegram_command == "set-webhook":
        return asyncio.run(_set_webhook(settings, args.url, args.drop_pending))
    if args.telegram_command == "delete-webhook":
        return asyncio.run(_delete_webhook(settings))
    if args.telegram_command == "worker" and not settings.secrets.redis_url:
        raise UserError("a separate worker shares the inbox through Redis: set REDIS_URL "
                        "(without Redis, `shopbot serve` answers Telegram in its own process)")
    return asyncio.run(_run(settings, polling=args.telegram_command == "poll"))


async def _run(settings: Settings, *, polling: bool) -> int:
    """Answer Telegram until interrupted: long polling, or the inbox the webhook fills."""
    from bot.app import open_services, open_telegram
    from bot.channels.telegram_delivery import poll
    from bot.commands import require_model

    require_model(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    workers = max(settings.telegram.workers, 1)  # this command exists to answer
    async with open_services(settings) as services, open_telegram(settings, services, workers) as telegram:
        assert telegram is not None
        if polling:
            log.info("telegram: long polling (the webhook, if any, is removed)")
            await poll(telegram.channel.application, telegram.inbox, stop)
        else:
            log.info("telegram: answering updates from the inbox")
            await stop.wait()
    return 0


async def _set_webhook(settings: Settings, url: str, drop_pending: bool) -> int:
    from bot.channels.telegram_delivery import ALLOWED_UPDATES

    secret = settings.secrets.telegram_webhook_secret.reveal()
    if not secret:
        raise UserError("set TELEGRAM_WEBHOOK_SECRET first (1-256 of A-Z a-z 0-9 _ -): without it the "
                        "webhook refuses every update, so nobody else can post updates to it")
    if not url.startswith(("https://", "http://")):
        raise UserError(f"the webhook URL must be an https URL ending in /telegram/webhook, got {url!r}")
    async with _bot(settings) as bot:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES),
                              drop_pending_updates=drop_pending)
        info = await bot.get_webhook_info()
    print(f"webhook set: Telegram now posts updates to {info.url}")
    return 0


async def _delete_webhook(settings: Settings) -> int:
    async with _bot(settings) as bot:
        await bot.delete_webhook()
    print("webhook removed: use `shopbot telegram poll` or set a new one")
    return 0


@asynccontextmanager
async def _bot(settings: Settings) -> AsyncIterator[Bot]:
    """A Bot API client for one command; a wrong token or an unreachable API is a clear error."""
    bot = Bot(settings.secrets.telegram_bot_token.reveal(), base_url=settings.telegram.api_base_url)
    try:
        await bot.initialize()
    except InvalidToken as exc:
        raise UserError("Telegram refused TELEGRAM_BOT_TOKEN: check the token BotFather gave you") from exc
    except NetworkError as exc:
        raise UserError(f"cannot reach the Bot API at {settings.telegram.api_base_url}: {exc}") from exc
    try:
        yield bot
    finally:
        await bot.shutdown()
