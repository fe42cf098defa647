"""A fake Telegram Bot API server on 127.0.0.1 (the updates it hands out come from `telegram_updates`).

python-telegram-bot talks to it over real HTTP via ``base_url=tg.base_url``. It records every call, keeps the
chats as the bot left them, injects failures (429 with retry_after, 5xx) and enforces per-chat flood control.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

JSON = dict[str, Any]
Answer = tuple[int, JSON]

MAX_TEXT = 4096
_POLL_S = 0.02  # how often long polls and wait_for look again: simpler than waking across threads
_FLOOD_METHODS = frozenset({"sendMessage", "editMessageText"})
# PTB sends plain strings unencoded and everything else as JSON, so a text of "42" must not turn into 42.
_STRING_FIELDS = frozenset(
    {"text", "caption", "parse_mode", "url", "secret_token", "callback_query_id", "action", "language_code",
     "query", "inline_message_id", "ip_address", "business_connection_id", "title", "description", "name"}
)
_DESCRIPTIONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden: bot was blocked by the user",
                 404: "Not Found", 409: "Conflict: terminated by other getUpdates request"}


class ApiError(Exception):
    """Raised by a method handler to answer with a Telegram error."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


@dataclasses.dataclass
class Call:
    """One request the bot made; ``status`` is 0 while it is still being answered (a long poll)."""

    method: str
    params: JSON
    at: float  # time.monotonic() on arrival
    status: int = 0


@dataclasses.dataclass
class SentMessage:
    """A message as the bot sent it; ``text`` is the current text, ``edits`` each text an edit set, in order."""

    message_id: int
    chat_id: int
    text: str
    reply_markup: JSON | None = None
    edits: list[str] = dataclasses.field(default_factory=list)
    date: int = 0


def _error(status: int, description: str | None = None, retry_after: int | None = None) -> Answer:
    if description is None:
        description = f"Too Many Requests: retry after {retry_after}" if status == 429 else (
            _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase)
    body: JSON = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return status, body


def _decode(key: str, value: Any) -> Any:
    if isinstance(value, str) and key not in _STRING_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _read_params(request: Request) -> JSON:
    """Query string, then a JSON or form-encoded body; form values are JSON-decoded as PTB encodes them."""
    params: JSON = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if content_type.startswith("multipart/"):
        raise ApiError(400, "Bad Request: the fake Telegram API does not accept file uploads")
    if body and content_type.startswith("application/json"):
        try:
            loaded = json.loads(body)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON") from None
        if not isinstance(loaded, dict):
            raise ApiError(400, "Bad Request: JSON body must be an object")
        params.update(loaded)
    elif body:
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return {key: _decode(key, value) for key, value in params.items()}


def _chat_id(params: JSON) -> int | None:
    value = params.get("chat_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # "@channelname": never banned or flood-controlled


def text_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # Telegram counts UTF-16 code units, so emoji count twice


def chat_json(chat_id: int, chat_type: str | None = None) -> JSON:
    if chat_type is None:
        chat_type = "private" if chat_id > 0 else "supergroup" if str(chat_id).startswith("-100") else "group"
    if (chat_type == "private") != (chat_id > 0):
        raise ValueError(f"chat {chat_id}: private chats have positive ids, groups negative ones")
    if chat_type == "private":
        return {"id": chat_id, "type": "private", "first_name": "Ada"}
    return {"id": chat_id, "type": chat_type, "title": "Juniper fans"}


class FakeTelegram:
    """The Bot API for one bot token, served by uvicorn in a background thread with its own event loop."""

    def __init__(self, token: str = "123456:TEST-token", bot_username: str = "juniper_shop_bot") -> None:
        self.token, self.bot_username = token, bot_username
        self.bot_id = int(token.split(":", 1)[0])
        self.base_url = ""  # set by start()
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._chats: dict[int, dict[int, SentMessage]] = {}
        self._next_id: dict[int, int] = {}
        self._updates: list[JSON] = []
        self._webhook: JSON | None = None
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._failures: dict[str, deque[tuple[int, int]]] = {}
        self._holds: dict[str, deque[float]] = {}
        self._flood: tuple[float, int] | None = None
        self._last_accepted: dict[int, float] = {}
        self._banned_until: dict[int, float] = {}
        self._violations = 0
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[JSON], Any]] = {
            "getMe": lambda p: self.me, "close": lambda p: True, "logOut": lambda p: True,
            "setWebhook": self._set_webhook, "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._webhook_info, "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text, "deleteMessage": self._delete_message,
            "sendChatAction": lambda p: True, "answerCallbackQuery": lambda p: True,
            "setMyCommands": self._set_commands, "deleteMyCommands": self._set_commands,
            "getMyCommands": lambda p: self._commands.get(self._scope(p), []),
            "getUpdates": lambda p: [],  # answered by _get_updates, outside the lock
        }
        self._canonical = {name.lower(): name for name in self._handlers}  # Telegram ignores method case

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> FakeTelegram:
        """Serve on a free port; returns self once requests are accepted."""
        if self._server is not None:
            raise RuntimeError("FakeTelegram already started")
        app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="fake-telegram", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake Telegram API server did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        return self

    def stop(self) -> None:
        """Answer pending long polls with no updates and shut the server down."""
        self._stopping.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what the bot did ------------------------------------------------------------------------------------------
    @property
    def me(self) -> JSON:
        """The bot's User object, as getMe returns it."""
        return {"id": self.bot_id, "is_bot": True, "first_name": "Juniper Shop", "username": self.bot_username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
                "can_connect_to_business": False, "has_main_web_app": False}

    def calls(self, method: str | None = None) -> list[Call]:
        """Copies of the recorded calls (of one method, if given) in arrival order."""
        with self._lock:
            return [dataclasses.replace(c, params=dict(c.params)) for c in self._calls
                    if method is None or c.method == method]

    def messages(self, chat_id: int) -> list[SentMessage]:
        """Copies of the messages currently in the chat as the bot sent and edited them, in send order."""
        with self._lock:
            return [dataclasses.replace(m, edits=list(m.edits)) for m in self._chats.get(chat_id, {}).values()]

    @property
    def violations(self) -> int:
        """Requests that arrived for a chat while a 429's retry_after still banned it."""
        with self._lock:
            return self._violations

    @property
    def webhook(self) -> JSON | None:
        """What setWebhook stored (url, secret_token, allowed_updates, ...); None when no webhook is set."""
        with self._lock:
            return dict(self._webhook) if self._webhook is not None else None

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Poll ``predicate`` until true; AssertionError naming it and the last calls on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(self._timeout_message(predicate, timeout, what))
            time.sleep(_POLL_S)

    async def wait_for_async(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """wait_for for async tests: sleeps without blocking a bot running on the test's event loop."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(self._timeout_message(predicate, timeout, what))
            await asyncio.sleep(_POLL_S)

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10.0) -> list[SentMessage]:
        """Wait until the chat holds at least ``count`` bot messages; returns them all."""
        self.wait_for(lambda: len(self.messages(chat_id)) >= count, timeout, f"{count} message(s) in chat {chat_id}")
        return self.messages(chat_id)

    async def wait_for_messages_async(self, chat_id: int, count: int, timeout: float = 10.0) -> list[SentMessage]:
        """wait_for_messages for async tests."""
        await self.wait_for_async(lambda: len(self.messages(chat_id)) >= count, timeout,
                                  f"{count} message(s) in chat {chat_id}")
        return self.messages(chat_id)

    def _timeout_message(self, predicate: Callable[[], bool], timeout: float, what: str) -> str:
        recent = ", ".join(f"{c.method}->{c.status or 'pending'}" for c in self.calls()[-12:]) or "none"
        return f"timed out after {timeout}s waiting for {what or getattr(predicate, '__qualname__', predicate)}; " \
               f"last calls: {recent}"

    # -- failure injection and updates -----------------------------------------------------------------------------
    def fail_next(self, method: str, times: int = 1, status: int = 429, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` get ``status`` (a 429 carries retry_after and bans the chat)."""
        with self._lock:
            queue = self._failures.setdefault(self._canonical.get(method.lower(), method), deque())
            queue.extend([(status, retry_after)] * times)

    def hold_next(self, method: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` are answered only after ``seconds`` (a hung Bot API)."""
        with self._lock:
            self._holds.setdefault(self._canonical.get(method.lower(), method), deque()).extend([seconds] * times)

    def flood_control(self, min_interval_s: float, retry_after: int = 1) -> None:
        """Per chat, a sendMessage/editMessageText sooner than ``min_interval_s`` after the last accepted one: 429."""
        with self._lock:
            self._flood = (min_interval_s, retry_after)

    def push_update(self, update: JSON) -> None:
        """Queue an update (with its update_id) for getUpdates."""
        if not isinstance(update.get("update_id"), int):
            raise ValueError("an update needs an integer update_id; UpdateFactory makes them")
        with self._lock:
            self._updates.append(update)

    # -- serving ---------------------------------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> JSONResponse:
        at = time.monotonic()
        method = request.path_params["method"]
        method = self._canonical.get(method.lower(), method)
        answer: Answer | None = None
        try:
            params = await _read_params(request)
        except ApiError as exc:
            params, answer = {}, _error(exc.status, exc.description)
        call = Call(method, params, at)
        with self._lock:
            self._calls.append(call)
        with self._lock:
            holds = self._holds.get(method)
            hold = holds.popleft() if holds else 0.0
        if hold:
            await asyncio.sleep(hold)
        if answer is None:
            answer = await self._answer(request.path_params["token"], method, params, at)
        with self._lock:
            call.status = answer[0]
        return JSONResponse(answer[1], status_code=answer[0])

    async def _answer(self, token: str, method: str, params: JSON, at: float) -> Answer:
        if token != self.token:
            return _error(401)
        handler = self._handlers.get(method)
        if handler is None:
            return _error(404)
        with self._lock:
            refusal = self._refusal(method, params, at)
            if refusal is not None:
                return refusal
            if method != "getUpdates":
                try:
                    result = handler(params)
                except ApiError as exc:
                    return _error(exc.status, exc.description)
                chat = _chat_id(params)
                if method in _FLOOD_METHODS and chat is not None:
                    self._last_accepted[chat] = at
                return 200, {"ok": True, "result": result}
        return await self._get_updates(params)

    def _refusal(self, method: str, params: JSON, at: float) -> Answer | None:
        """A ban, an injected failure or flood control, in that order; called under the lock."""
        chat = _chat_id(params)
        if chat is not None and at < self._banned_until.get(chat, 0.0):
            self._violations += 1
            return _error(429, retry_after=max(1, math.ceil(self._banned_until[chat] - at)))
        failures = self._failures.get(method)
        if failures:
            status, retry_after = failures.popleft()
        elif self._flood and method in _FLOOD_METHODS and chat is not None and \
                at - self._last_accepted.get(chat, -math.inf) < self._flood[0]:
            status, retry_after = 429, self._flood[1]
        else:
            return None
        if status != 429:
            return _error(status)
        if chat is not None:
            self._banned_until[chat] = at + retry_after
        return _error(429, retry_after=retry_after)

    async def _get_updates(self, params: JSON) -> Answer:
        offset, limit = int(params.get("offset") or 0), min(max(int(params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            with self._lock:
                if self._webhook is not None:
                    return _error(409, "Conflict: can't use getUpdates method while webhook is active; "
                                       "use deleteWebhook to delete the webhook first")
                # A positive offset confirms everything below it; a negative one keeps only the last -offset.
                if offset > 0:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                elif offset < 0:
                    self._updates = self._updates[offset:]
                ready = self._updates[:limit]
            if ready or self._stopping.is_set() or time.monotonic() >= deadline:
                return 200, {"ok": True, "result": ready}
            await asyncio.sleep(_POLL_S)

    # -- method handlers, called under the lock --------------------------------------------------------------------
    def _message_json(self, message: SentMessage) -> JSON:
        data: JSON = {"message_id": message.message_id, "date": message.date, "chat": chat_json(message.chat_id),
                      "from": self.me, "text": message.text}
        if message.reply_markup is not None:
            data["reply_markup"] = message.reply_markup
        if message.edits:
            data["edit_date"] = int(time.time())
        return data

    @staticmethod
    def _checked_text(params: JSON) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if text_length(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    def _find(self, params: JSON, action: str) -> SentMessage:
        chat, message_id = _chat_id(params), params.get("message_id")
        found = self._chats.get(chat, {}).get(int(message_id)) if chat is not None and message_id else None
        if found is None:
            raise ApiError(400, f"Bad Request: message to {action} not found")
        return found

    def _send_message(self, params: JSON) -> JSON:
        chat = _chat_id(params)
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        text = self._checked_text(params)
        message_id = self._next_id[chat] = self._next_id.get(chat, 0) + 1
        message = SentMessage(message_id, chat, text, params.get("reply_markup"), date=int(time.time()))
        self._chats.setdefault(chat, {})[message_id] = message
        return self._message_json(message)

    def _edit_message_text(self, params: JSON) -> JSON:
        message, text = self._find(params, "edit"), self._checked_text(params)
        markup = params.get("reply_markup")  # like Telegram, an edit without a keyboard removes it
        if text == message.text and markup == message.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        message.text, message.reply_markup = text, markup
        message.edits.append(text)
        return self._message_json(message)

    def _delete_message(self, params: JSON) -> bool:
        message = self._find(params, "delete")
        del self._chats[message.chat_id][message.message_id]
        return True

    def _set_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self._webhook = dict(params) if params.get("url") else None
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        return self._set_webhook({"drop_pending_updates": params.get("drop_pending_updates")})

    def _webhook_info(self, params: JSON) -> JSON:
        info: JSON = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}
        if self._webhook is not None:
            info.update(url=self._webhook["url"], max_connections=self._webhook.get("max_connections", 40))
            if self._webhook.get("allowed_updates") is not None:
                info["allowed_updates"] = self._webhook["allowed_updates"]
        return info

    @staticmethod
    def _scope(params: JSON) -> tuple[str, str]:
        return json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True), params.get("language_code", "")

    def _set_commands(self, params: JSON) -> bool:
        self._commands[self._scope(params)] = list(params.get("commands") or [])  # deleteMyCommands sends none
        return True
