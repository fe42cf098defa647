"""Sending to a Telegram chat: replies cut to Telegram's limit, buttons as inline keyboards, retries,
"typing...", and a generator reply shown while it is written by editing one message in place."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction, InlineKeyboardButtonLimit, MessageLimit
from telegram.error import BadRequest, Forbidden, NetworkError

from bot.channels.splitting import split_message
from bot.settings import TelegramSettings
from bot.types import Button, Reply

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryLater(Exception):
    """The update could not be answered now (store busy or down, Telegram unreachable): try it again."""


class TelegramSender:
    """Everything the channel sends goes through here, in order, with the same retries."""

    def __init__(self, bot: Bot, settings: TelegramSettings) -> None:
        self.bot = bot
        self.settings = settings

    async def send_replies(self, chat_id: int, replies: list[Reply]) -> list[Message]:
        """Send replies in order: each cut to Telegram's limit, its buttons under its last part."""
        sent: list[Message] = []
        for reply in replies:
            parts = split_message(reply.text, MessageLimit.MAX_TEXT_LENGTH)
            for i, part in enumerate(parts):
                markup = keyboard(reply.buttons) if i == len(parts) - 1 else None
                sent.append(await self.call(functools.partial(self.bot.send_message, chat_id, part,
                                                              reply_markup=markup)))
        return sent

    async def call(self, send: Callable[[], Awaitable[T]]) -> T:
        """A Bot API call, retried with backoff on network errors and 5xx answers.

        429s are retried by the rate limiter, which waits `retry_after` first. After the last
        attempt the update goes back to the inbox (RetryLater) instead of being lost.
        """
        attempt = 0
        while True:
            try:
                return await send()
            except BadRequest:  # our request is wrong: retrying cannot help
                raise
            except NetworkError as exc:
                if attempt >= self.settings.max_retries:
                    raise RetryLater(f"Telegram unreachable: {exc}") from exc
            await asyncio.sleep(min(0.25 * 2**attempt, 8.0))
            attempt += 1

    @asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        """Show "typing..." while the bot works (Telegram clears it after 5 s, so it is repeated)."""
        async def keep_typing() -> None:
            while True:
                try:
                    await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
                except (NetworkError, Forbidden) as exc:  # cosmetic: never worth a failed reply
                    log.debug("telegram chat %s: typing action failed: %s", chat_id, exc)
                await asyncio.sleep(self.settings.typing_interval_s)

        task = asyncio.create_task(keep_typing())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def draft(self, chat_id: int) -> Draft:
        return Draft(self, chat_id)


class Draft:
    """A generator reply shown while it is written: sent once, then edited in place, at most every
    `stream_interval_s`, and finally edited into the checked reply (Telegram has no other streaming)."""

    def __init__(self, sender: TelegramSender, chat_id: int) -> None:
        self._sender = sender
        self._chat_id = chat_id
        self._message: Message | None = None
        self._shown = ""
        self._shown_at = 0.0

    async def show(self, reply_id: str, text: str) -> None:
        text = split_message(text, MessageLimit.MAX_TEXT_LENGTH)[0]
        now = asyncio.get_running_loop().time()
        if self._message is None:
            self._message = await self._sender.bot.send_message(self._chat_id, text)
        elif text != self._shown and now - self._shown_at >= self._sender.settings.stream_interval_s:
            await self._message.edit_text(text)
        else:
            return
        self._shown, self._shown_at = text, now

    async def finish(self, replies: list[Reply]) -> None:
        """Send `replies`; the first one replaces the draft, if a draft is showing."""
        if self._message is None or not replies:
            await self._sender.send_replies(self._chat_id, replies)
            return
        first, *rest = replies
        head, *tail = split_message(first.text, MessageLimit.MAX_TEXT_LENGTH)
        markup = keyboard(first.buttons) if not tail else None
        if head != self._shown or markup is not None:
            try:
                await self._sender.call(functools.partial(self._message.edit_text, head, reply_markup=markup))
            except BadRequest as exc:  # "message is not modified" and the like: the text is there
                log.debug("telegram chat %s: final edit refused: %s", self._chat_id, exc)
        if tail:
            await self._sender.send_replies(self._chat_id, [Reply("\n".join(tail), first.buttons, first.kind)])
        await self._sender.send_replies(self._chat_id, rest)


def keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    """Buttons as an inline keyboard, one per row; a payload Telegram cannot carry is left out."""
    rows = [[InlineKeyboardButton(b.title, callback_data=b.payload)] for b in buttons
            if 1 <= len(b.payload.encode()) <= InlineKeyboardButtonLimit.MAX_CALLBACK_DATA]
    return InlineKeyboardMarkup(rows) if rows else None
