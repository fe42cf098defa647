"""The Telegram channel: python-telegram-bot handlers that turn updates into engine messages.

How updates arrive (webhook or long polling) and the delivery guarantees live in
`bot.channels.telegram_delivery`, how replies go out in `bot.channels.telegram_send`; this module
answers one update at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

from telegram import Message, Update
from telegram.constants import ChatAction, ChatType, MessageEntityType
from telegram.error import BadRequest
from telegram.ext import AIORateLimiter, Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters
from telegram.ext import MessageHandler as OnMessage

from bot.actions.knowledge import ShopKnowledge
from bot.channels.telegram_send import RetryLater, TelegramSender
from bot.engine import Engine, InputRejected
from bot.settings import TelegramSettings
from bot.state import ConversationBusy, StoreUnavailable
from bot.types import Conversation, InboundMessage, Mode, Reply

log = logging.getLogger(__name__)

CHANNEL = "telegram"
T = TypeVar("T")
Context = ContextTypes.DEFAULT_TYPE


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
        self.sender = TelegramSender(application.bot, settings)

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

    async def _start(self, update: Update, context: Context) -> None:
        await self._converse(update, "/greet", addressed=True)

    async def deliver(self, conversation: Conversation, reply: Reply) -> None:
        """An operator's message to the shopper's Telegram chat."""
        chat_id = chat_id_of(conversation.id)
        if chat_id is None:
            raise ValueError(f"{conversation.id} is not a Telegram conversation")
        await self.application.initialize()  # a no-op once done; a web process with no workers has not
        await self.sender.send_replies(chat_id, [reply])

    async def show_typing(self, conversation: str) -> None:
        """An operator is typing: Telegram shows it in the shopper's chat for a few seconds."""
        chat_id = chat_id_of(conversation)
        if chat_id is not None:
            await self.application.initialize()
            await self.application.bot.send_chat_action(chat_id, ChatAction.TYPING)

    # Commands: python-telegram-bot already ignores those addressed to another bot in a group.
    async def _help(self, update: Update, context: Context) -> None:
        await self._say_or_forward(update, "telegram_help", "[the shopper typed /help]")

    async def _human(self, update: Update, context: Context) -> None:
        await self._converse(update, "/contact_human_agent", addressed=True)

    async def _reset(self, update: Update, context: Context) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        if await self._with_person(chat.id):  # the operator's conversation is not the shopper's to wipe
            await self._converse(update, "[the shopper typed /reset]", addressed=True)
            return
        await self._stored(self.engine.store.delete(conversation_id(chat.id)))
        await self._say(update, "telegram_reset")

    async def _button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        with suppress(BadRequest):  # an old query can no longer be answered; the button still counts
            await self.sender.call(query.answer)
        if query.data:
            await self._converse(update, query.data, addressed=True)

    async def _edited(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and self._addressed(update):
            edited = f"[edited message] {message.text or message.caption or ''}".strip()
            await self._say_or_forward(update, "telegram_edited", edited)

    async def _text(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and message.text is not None and self._addressed(update):
            await self._converse(update, self._without_mention(message))

    async def _unsupported(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is not None and self._addressed(update):
            await self._say_or_forward(update, "telegram_unsupported", describe(message))

    async def _say_or_forward(self, update: Update, key: str, forwarded: str) -> None:
        """The bot's own answer; but while a person has the conversation, the bot stays silent and
        the operators see what the shopper did."""
        chat = update.effective_chat
        if chat is not None and await self._with_person(chat.id):
            await self._converse(update, forwarded, addressed=True)
        else:
            await self._say(update, key)

    async def _with_person(self, chat_id: int) -> bool:
        conversation = await self._stored(self.engine.store.load(conversation_id(chat_id)))
        return conversation is not None and conversation.mode in (Mode.PENDING_HUMAN, Mode.HUMAN)

    async def _converse(self, update: Update, text: str, *, addressed: bool = False) -> None:
        """One shopper message through the engine; its replies (or a polite refusal) to the chat."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or not (addressed or self._addressed(update)):
            return
        metadata = {"chat_type": chat.type, "language": user.language_code if user else None}
        message = InboundMessage(CHANNEL, conversation_id(chat.id), text, user_id=str(user.id) if user else "",
                                 metadata={k: v for k, v in metadata.items() if v})
        draft = self.sender.draft(chat.id)
        async with self.sender.typing(chat.id):
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
            await self.sender.send_replies(update.effective_chat.id, [Reply(self.knowledge.answer(key))])

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

    async def _stored(self, call: Awaitable[T]) -> T:
        """Store trouble is temporary: the update goes back to the inbox and is answered later."""
        try:
            return await call
        except (ConversationBusy, StoreUnavailable) as exc:
            raise RetryLater(str(exc)) from exc

_CONTENT = (("photo", "a photo"), ("sticker", "a sticker"), ("voice", "a voice message"), ("video", "a video"),
            ("video_note", "a video message"), ("audio", "an audio file"), ("animation", "a GIF"),
            ("document", "a document"), ("location", "a location"), ("contact", "a contact"), ("poll", "a poll"),
            ("venue", "a venue"), ("dice", "a dice"))


def describe(message: Message) -> str:
    """What the shopper sent, in words, for operators: "[the shopper sent a photo: size M?]"."""
    label = next((text for attribute, text in _CONTENT if getattr(message, attribute, None)), "something")
    caption = f": {message.caption}" if message.caption else ""
    return f"[the shopper sent {label}{caption}]"


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
