"""How Telegram updates reach the channel without being lost or answered twice.

Every update is written to the inbox before Telegram hears "received": by the webhook
(`POST /telegram/webhook`, checked against the secret token) or by the long-polling loop, which
only moves its offset past updates the inbox holds. Workers claim updates from the inbox, answer
them through `TelegramChannel`, and complete them only once the reply is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from telegram import Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import Application, ContextTypes

from bot.channels.telegram import TelegramChannel
from bot.channels.telegram_send import RetryLater
from bot.state.inbox import QueuedUpdate, UpdateInbox

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "edited_message", "callback_query")  # what set-webhook and polling ask for
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def chat_of(update: Mapping[str, Any]) -> str | None:
    """The chat an update belongs to (its ordering key), or None for updates without one."""
    for kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
        chat = (update.get(kind) or {}).get("chat") if isinstance(update.get(kind), dict) else None
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            return str(chat["id"])
    query = update.get("callback_query")
    if isinstance(query, dict):
        message, sender = query.get("message"), query.get("from")
        if isinstance(message, dict) and isinstance((message.get("chat") or {}).get("id"), int):
            return str(message["chat"]["id"])
        if isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return str(sender["id"])  # a button under an inline-mode message: answer the presser
    return None


async def accept(inbox: UpdateInbox, update: Any) -> str:
    """Put one update (already decoded JSON) into the inbox: "accepted", "duplicate" or "ignored"."""
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise ValueError("not a Telegram update: a JSON object with an integer update_id is expected")
    chat = chat_of(update)
    if chat is None:
        return "ignored"  # no chat to answer (polls, member changes...): nothing a shopper waits for
    fresh = await inbox.put(update["update_id"], chat, json.dumps(update, ensure_ascii=False))
    return "accepted" if fresh else "duplicate"


class TelegramWorker:
    """Answers claimed updates, up to `concurrency` chats at once, each chat's in order."""

    def __init__(self, channel: TelegramChannel, inbox: UpdateInbox, concurrency: int, lease_ms: int) -> None:
        self.channel = channel
        self.inbox = inbox
        self._concurrency = max(concurrency, 1)
        self._renew_every = lease_ms / 3000
        self._failures: dict[int, BaseException] = {}
        channel.application.add_error_handler(self._record_failure)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: connect to Telegram, then claim and answer updates."""
        await self._initialize(stop)
        running: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            free = self._concurrency - len(running)
            if free <= 0:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                claimed = await self.inbox.claim(free, block_ms=500)
            except Exception:  # the inbox's store is down: keep trying, nothing is lost meanwhile
                log.exception("telegram worker: cannot read the inbox; retrying")
                await _sleep_unless(stop, 2.0)
                continue
            for queued in claimed:
                task = asyncio.create_task(self._answer_logged(queued))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running)

    async def _answer_logged(self, queued: QueuedUpdate) -> None:
        try:
            await self.answer(queued)
        except Exception:  # the inbox could not be told: the lease runs out and the update comes back
            log.exception("telegram update %s in chat %s: could not finish it", queued.entry_id, queued.chat)

    async def answer(self, queued: QueuedUpdate) -> None:
        """Answer one update; complete it when the reply is out, give it back when it must be retried."""
        try:
            update = Update.de_json(json.loads(queued.payload), self.channel.application.bot)
        except Exception:
            log.exception("telegram update %s in chat %s is unreadable; dropped", queued.entry_id, queued.chat)
            await self.inbox.complete(queued)
            return
        renewing = asyncio.create_task(self._renew(queued))
        try:
            await self.channel.application.process_update(update)
        finally:
            renewing.cancel()
            with suppress(asyncio.CancelledError):
                await renewing
        failure = self._failures.pop(update.update_id, None)
        if isinstance(failure, RetryLater):
            log.warning("telegram update %s: %s; retrying shortly", update.update_id, failure)
            await self.inbox.release(queued, retry_in_s=2.0)
        else:  # answered, or answered with an apology (logged by the error handler)
            await self.inbox.complete(queued)

    async def _record_failure(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and context.error is not None:
            self._failures[update.update_id] = context.error
            if not isinstance(context.error, RetryLater):
                log.error("telegram update %s failed", update.update_id, exc_info=context.error)

    async def _renew(self, queued: QueuedUpdate) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                await self.inbox.renew(queued)
            except Exception:  # losing the lease only risks a second answer, not a lost one
                log.warning("telegram update %s: could not renew its lease", queued.entry_id)

    async def _initialize(self, stop: asyncio.Event) -> None:
        """Connect to the Bot API (getMe); a network failure is retried, a wrong token is not."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self.channel.application.initialize()
                log.info("telegram: answering as @%s", self.channel.application.bot.username)
                return
            except InvalidToken:
                raise
            except NetworkError as exc:
                log.warning("telegram: Bot API unreachable (%s); retrying in %.0f s", exc, delay)
                await _sleep_unless(stop, delay)
                delay = min(delay * 2, 60.0)


async def poll(application: Application, inbox: UpdateInbox, stop: asyncio.Event,
               timeout_s: int = 25) -> None:
    """Long polling: fetch updates and put them into the inbox; the offset only moves past kept ones."""
    bot = application.bot
    await bot.delete_webhook()  # Telegram refuses getUpdates while a webhook is set
    offset: int | None = None
    while not stop.is_set():
        try:
            updates = await bot.get_updates(offset=offset, timeout=timeout_s, allowed_updates=list(ALLOWED_UPDATES))
            for update in updates:
                await accept(inbox, update.to_dict())
                offset = update.update_id + 1
        except NetworkError as exc:  # includes timeouts: ask again after a pause
            log.warning("telegram polling: %s; retrying", exc)
            await _sleep_unless(stop, 2.0)
        except Exception:  # the inbox's store is down: the offset stays, Telegram keeps the updates
            log.exception("telegram polling: could not keep an update; retrying")
            await _sleep_unless(stop, 2.0)


def webhook_router(find: Callable[[Request], tuple[UpdateInbox, str] | None]) -> APIRouter:
    """`POST /telegram/webhook`: checks the secret token, keeps the update, then answers 200.

    `find` gives the running channel's inbox and secret, or None when Telegram is not enabled.
    """
    router = APIRouter()

    @router.post("/telegram/webhook", include_in_schema=False)
    async def telegram_webhook(request: Request) -> JSONResponse:
        found = find(request)
        if found is None:
            return JSONResponse(status_code=404, content={"detail": "the Telegram channel is not enabled "
                                                                    "(set TELEGRAM_BOT_TOKEN)"})
        inbox, secret = found
        given = request.headers.get(SECRET_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            return JSONResponse(status_code=403, content={"detail": "wrong or missing secret token"})
        try:
            update = json.loads(await request.body())
            outcome = await accept(inbox, update)
        except ValueError as exc:  # not JSON, or not an update: Telegram never sends these, nothing to retry
            return JSONResponse(status_code=400, content={"detail": str(exc)})
        except Exception:  # the inbox is down: a 5xx makes Telegram deliver the update again later
            log.exception("telegram webhook: could not keep an update")
            return JSONResponse(status_code=503, content={"detail": "cannot keep the update now, retry"})
        return JSONResponse({"ok": True, "update": outcome})

    return router


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
