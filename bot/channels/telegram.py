"""The Telegram channel: python-telegram-bot handlers that turn updates into engine messages and
render the engine's replies (split to Telegram's limit, buttons as inline keyboards).

How updates arrive (webhook or long polling) and the delivery guarantees live in
`bot.channels.telegram_delivery`; this module only answers one update at a time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatAction, ChatType, InlineKeyboardButtonLimit, MessageEntityType, MessageLimit
from telegram.error import BadRequest, Forbidden, NetworkError
from telegram.ext import AIORateLimiter, Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters
from telegram.ext import MessageHandler as OnMessage

from bot.actions.knowledge import ShopKnowledge
from bot.channels.splitting import split_message
from bot.engine import Engine, InputRejected
from bot.settings import TelegramSettings
from bot.state import ConversationBusy, StoreUnavailable
from bot.types import Button, InboundMessage, Reply

log = logging.getLogger(__name__)

CHANNEL = "telegram"
T = TypeVar("T")
Context = ContextTypes.DEFAULT_TYPE


class RetryLater(Exception):
    """The update could not be answered now (store busy or down, Telegram unreachable): try it again."""


def conversation_id(chat_id: int) -> str:
    return f"{CHANNEL}:{chat_id}"


def chat_id_of(conversation: str) -> int | None:
    """The Telegram chat of a conversation id, or None for another channel's conversation."""
    prefix = f"{CHANNEL}:"
    if not conversation.startswith(prefix):
        return None
    try:
        return int(conversation[len(prefix):])
    except ValueError:
        return None


def build_application(token: str, settings: TelegramSettings) -> Application:
    """The Bot API client: no updater (updates come from our inbox), sends paced by the rate limiter."""
    return (Application.builder().token(token).base_url(settings.api_base_url).updater(None)
            .rate_limiter(AIORateLimiter(max_retries=settings.max_retries)).build())


class TelegramChannel:
    """Answers Telegram updates with the engine; `install` registers its handlers on an Application."""

    def __init__(self, application: Application, engine: Engine, knowledge: ShopKnowledge,
                 settings: TelegramSettings) -> None:
        self.application = application
        self.engine = engine
        self.knowledge = knowledge
        self.settings = settings

    def install(self) -> None:
        app = self.application
        app.add_handler(CommandHandler("start", self._start))
        app.add_handler(CommandHandler("help", self._help))
        app.add_handler(CommandHandler("human", self._human))
        app.add_handler(CommandHandler("reset", self._reset))
        app.add_handler(CallbackQueryHandler(self._button))
        app.add_handler(OnMessage(filters.UpdateType.EDITED, self._edited))
        app.add_handler(OnMessage(filters.TEXT, self._text))
        app.add_handler(OnMessage(filters.ALL, self._unsupported))

    async def send_replies(self, chat_id: int, replies: list[Reply]) -> list[Message]:
        """Send replies in order: each cut to Telegram's limit, its buttons under its last part."""
        sent: list[Message] = []
        for reply in replies:
            parts = split_message(reply.text, MessageLimit.MAX_TEXT_LENGTH)
            for i, part in enumerate(parts):
                markup = keyboard(reply.buttons) if i == len(parts) - 1 else None
                send = functools.partial(self.application.bot.send_message, chat_id, part, reply_markup=markup)
                sent.append(await self._call(send))
        return sent

    async def _start(self, update: Update, context: Context) -> None:
        await self._converse(update, "/greet", addressed=True)

    # Commands: python-telegram-bot already ignores those addressed to another bot in a group.
    async def _help(self, update: Update, context: Context) -> None:
        await self._say(update, "telegram_help")

    async def _human(self, update: Update, context: Context) -> None:
        await self._converse(update, "/contact_human_agent", addressed=True)

    async def _reset(self, update: Update, context: Context) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        await self._stored(self.engine.store.delete(conversation_id(chat.id)))
        await self._say(update, "telegram_reset")

    async def _button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        with suppress(BadRequest):  # an old query can no longer be answered; the button still counts
            await self._call(query.answer)
        if query.data:
            await self._converse(update, query.data, addressed=True)

    async def _edited(self, update: Update, context: Context) -> None:
        if self._addressed(update):
            await self._say(update, "telegram_edited")

    async def _text(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and message.text is not None and self._addressed(update):
            await self._converse(update, self._without_mention(message))

    async def _unsupported(self, update: Update, context: Context) -> None:
        if update.effective_message is not None and self._addressed(update):
            await self._say(update, "telegram_unsupported")

    async def _converse(self, update: Update, text: str, *, addressed: bool = False) -> None:
        """One shopper message through the engine; its replies (or a polite refusal) to the chat."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or not (addressed or self._addressed(update)):
            return
        metadata = {"chat_type": chat.type, "language": user.language_code if user else None}
        message = InboundMessage(CHANNEL, conversation_id(chat.id), text, user_id=str(user.id) if user else "",
                                 metadata={k: v for k, v in metadata.items() if v})
        draft = _Draft(self, chat.id)
        async with self._typing(chat.id):
            try:
                replies = await self._stored(self.engine.handle(message, on_draft=draft.show))
            except InputRejected as exc:
                replies = [Reply(exc.reply)]
            except RetryLater:
                raise
            except Exception:  # one bad update costs a polite reply, never the worker
                log.exception("telegram chat %s: could not answer update %s", chat.id, update.update_id)
                replies = [Reply(self.knowledge.answer("action_failed"))]
        await draft.finish(replies)

    async def _say(self, update: Update, key: str) -> None:
        if update.effective_chat is not None:
            await self.send_replies(update.effective_chat.id, [Reply(self.knowledge.answer(key))])

    def _addressed(self, update: Update) -> bool:
        """In a private chat always; in a group only when the bot is mentioned, replied to or commanded."""
        chat, message = update.effective_chat, update.effective_message
        if chat is None or chat.type == ChatType.PRIVATE:
            return chat is not None
        if message is None:
            return False
        bot = self.application.bot
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            return True
        mentions = message.parse_entities([MessageEntityType.MENTION, MessageEntityType.BOT_COMMAND])
        mentions.update(message.parse_caption_entities([MessageEntityType.MENTION]))
        names = {f"@{bot.username}".lower()}
        return any(text.lower() in names or text.lower().endswith(f"@{bot.username}".lower())
                   for text in mentions.values())

    def _without_mention(self, message: Message) -> str:
        """The text with the bot's @username taken out (a group message that addresses the bot)."""
        text = message.text or ""
        handle = f"@{self.application.bot.username}"
        mentioned = [e for e, t in message.parse_entities([MessageEntityType.MENTION]).items()
                     if t.lower() == handle.lower()]
        for entity in sorted(mentioned, key=lambda e: e.offset, reverse=True):
            start, end = _utf16_span(text, entity.offset, entity.length)
            text = text[:start] + text[end:]
        return " ".join(text.split()) or text

    @asynccontextmanager
    async def _typing(self, chat_id: int) -> AsyncIterator[None]:
        """Show "typing..." while the bot works (Telegram clears it after 5 s, so it is repeated)."""
        async def keep_typing() -> None:
            while True:
                try:
                    await self.application.bot.send_chat_action(chat_id, ChatAction.TYPING)
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

    async def _stored(self, call: Awaitable[T]) -> T:
        """Store trouble is temporary: the update goes back to the inbox and is answered later."""
        try:
            return await call
        except (ConversationBusy, StoreUnavailable) as exc:
            raise RetryLater(str(exc)) from exc

    async def _call(self, send: Callable[[], Awaitable[T]]) -> T:
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


class _Draft:
    """A generator reply shown while it is written: sent once, then edited in place, at most every
    `stream_interval_s`, and finally edited into the checked reply (Telegram has no other streaming)."""

    def __init__(self, channel: TelegramChannel, chat_id: int) -> None:
        self._channel = channel
        self._chat_id = chat_id
        self._message: Message | None = None
        self._shown = ""
        self._shown_at = 0.0

    async def show(self, text: str) -> None:
        text = split_message(text, MessageLimit.MAX_TEXT_LENGTH)[0]
        now = asyncio.get_running_loop().time()
        if self._message is None:
            self._message = await self._channel.application.bot.send_message(self._chat_id, text)
        elif text != self._shown and now - self._shown_at >= self._channel.settings.stream_interval_s:
            await self._message.edit_text(text)
        else:
            return
        self._shown, self._shown_at = text, now

    async def finish(self, replies: list[Reply]) -> None:
        """Send `replies`; the first one replaces the draft, if a draft is showing."""
        if self._message is None or not replies:
            await self._channel.send_replies(self._chat_id, replies)
            return
        first, *rest = replies
        head, *tail = split_message(first.text, MessageLimit.MAX_TEXT_LENGTH)
        markup = keyboard(first.buttons) if not tail else None
        if head != self._shown or markup is not None:
            edit = functools.partial(self._message.edit_text, head, reply_markup=markup)
            try:
                await self._channel._call(edit)  # noqa: SLF001 - the same retries as every send
            except BadRequest as exc:  # "message is not modified" and the like: the text is there
                log.debug("telegram chat %s: final edit refused: %s", self._chat_id, exc)
        if tail:
            await self._channel.send_replies(self._chat_id, [Reply("\n".join(tail), first.buttons, first.kind)])
        await self._channel.send_replies(self._chat_id, rest)


def keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    """Buttons as an inline keyboard, one per row; a payload Telegram cannot carry is left out."""
    rows = [[InlineKeyboardButton(b.title, callback_data=b.payload)] for b in buttons
            if 1 <= len(b.payload.encode()) <= InlineKeyboardButtonLimit.MAX_CALLBACK_DATA]
    return InlineKeyboardMarkup(rows) if rows else None


def _utf16_span(text: str, offset: int, length: int) -> tuple[int, int]:
    """Telegram's entity offsets count UTF-16 units; Python indexes code points."""
    units = 0
    start = end = len(text)
    for index, char in enumerate(text):
        if units == offset:
            start = index
        if units == offset + length:
            end = index
            break
        units += 2 if ord(char) > 0xFFFF else 1
    return start, end
