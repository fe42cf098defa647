"""Incoming Telegram updates as Bot API JSON, for the fake server's getUpdates and for webhook posts."""

from __future__ import annotations

import random
import re
import time
from typing import Any

from tests.fakes.telegram_api import JSON, chat_json, text_length


class UpdateFactory:
    """Incoming updates as Bot API JSON, with increasing update_id and message_id."""

    def __init__(self, bot_username: str = "juniper_shop_bot", bot_id: int = 123456,
                 first_update_id: int | None = None) -> None:
        self.bot_username, self.bot_id = bot_username, bot_id
        self._update_id = (first_update_id if first_update_id is not None else random.randint(10_000, 900_000)) - 1
        self._message_id = 1000

    def text(self, chat_id: int, text: str, *, user_id: int | None = None, chat_type: str | None = None,
             reply_to_bot: bool = False) -> JSON:
        """A text message; /command and @bot_username entities are added as Telegram would."""
        message = self._message(chat_id, user_id, chat_type, text=text)
        entities = self._entities(text)
        if entities:
            message["entities"] = entities
        if reply_to_bot:
            message["reply_to_message"] = {"message_id": 1, "date": message["date"], "chat": message["chat"],
                                           "from": self._bot(), "text": "How can I help?"}
        return self._update(message=message)

    def callback(self, chat_id: int, data: str, message_id: int = 1, *, user_id: int | None = None) -> JSON:
        """A press on an inline button under the bot's message ``message_id``."""
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat_json(chat_id), "from": self._bot(),
                   "text": "Choose an option"}
        user = self._user(user_id if user_id is not None else self._default_user(chat_id))
        return self._update(callback_query={"id": str(self._update_id + 1), "from": user, "message": message,
                                            "chat_instance": str(abs(chat_id)), "data": data})

    def edited(self, chat_id: int, text: str, message_id: int | None = None, *, user_id: int | None = None) -> JSON:
        """The user edited their message ``message_id`` (default: the last one this factory made)."""
        message = self._message(chat_id, user_id, None, message_id=message_id or self._message_id, text=text)
        message["edit_date"] = message["date"]
        return self._update(edited_message=message)

    def photo(self, chat_id: int, *, user_id: int | None = None, caption: str | None = None) -> JSON:
        sizes = [{"file_id": f"photo-{n}", "file_unique_id": f"ph{n}", "width": n, "height": n, "file_size": n * 90}
                 for n in (90, 800)]
        content: JSON = {"photo": sizes, "caption": caption} if caption else {"photo": sizes}
        return self._update(message=self._message(chat_id, user_id, None, **content))

    def sticker(self, chat_id: int, *, user_id: int | None = None) -> JSON:
        sticker = {"file_id": "sticker-1", "file_unique_id": "st1", "type": "regular", "width": 512, "height": 512,
                   "is_animated": False, "is_video": False, "emoji": "👍"}
        return self._update(message=self._message(chat_id, user_id, None, sticker=sticker))

    def voice(self, chat_id: int, *, user_id: int | None = None) -> JSON:
        voice = {"file_id": "voice-1", "file_unique_id": "vo1", "duration": 3, "mime_type": "audio/ogg"}
        return self._update(message=self._message(chat_id, user_id, None, voice=voice))

    def document(self, chat_id: int, *, user_id: int | None = None) -> JSON:
        document = {"file_id": "doc-1", "file_unique_id": "do1", "file_name": "invoice.pdf",
                    "mime_type": "application/pdf", "file_size": 20480}
        return self._update(message=self._message(chat_id, user_id, None, document=document))

    def location(self, chat_id: int, *, user_id: int | None = None) -> JSON:
        location = {"latitude": 52.52, "longitude": 13.405}
        return self._update(message=self._message(chat_id, user_id, None, location=location))

    def contact(self, chat_id: int, *, user_id: int | None = None) -> JSON:
        user = user_id if user_id is not None else self._default_user(chat_id)
        contact = {"phone_number": "+15555550123", "first_name": "Ada", "user_id": user}
        return self._update(message=self._message(chat_id, user_id, None, contact=contact))

    def _update(self, **payload: Any) -> JSON:
        self._update_id += 1
        return {"update_id": self._update_id, **payload}

    def _message(self, chat_id: int, user_id: int | None, chat_type: str | None, message_id: int | None = None,
                 **content: Any) -> JSON:
        if message_id is None:
            self._message_id += 1
            message_id = self._message_id
        user = self._user(user_id if user_id is not None else self._default_user(chat_id))
        return {"message_id": message_id, "date": int(time.time()), "chat": chat_json(chat_id, chat_type),
                "from": user, **content}

    @staticmethod
    def _default_user(chat_id: int) -> int:
        return chat_id if chat_id > 0 else 1001

    @staticmethod
    def _user(user_id: int) -> JSON:
        return {"id": user_id, "is_bot": False, "first_name": "Ada", "language_code": "en"}

    def _bot(self) -> JSON:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Juniper Shop", "username": self.bot_username}

    def _entities(self, text: str) -> list[JSON]:
        """Offsets and lengths in UTF-16 code units, as Telegram counts them."""
        entities: list[JSON] = []
        command_end = 0
        if text.startswith("/"):
            command_end = len(text.split(maxsplit=1)[0])
            entities.append({"type": "bot_command", "offset": 0, "length": text_length(text[:command_end])})
        for match in re.finditer(rf"@{re.escape(self.bot_username)}\b", text, re.IGNORECASE):
            if match.start() >= command_end:
                entities.append({"type": "mention", "offset": text_length(text[:match.start()]),
                                 "length": text_length(match.group())})
        return entities
