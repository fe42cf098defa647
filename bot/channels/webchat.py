"""The web chat channel: the widget script, the demo shop page and the `/ws/chat` websocket.

One socket is one shopper's session. Frames are JSON (see README, "The chat widget"): the widget
says hello with its signed session token, the server answers with the conversation's history, and
then messages, drafts, replies, typing and feedback flow both ways. Messages carry the client's id,
so a message resent after a dropped connection is answered once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse

from bot.channels.frames import reply_frame
from bot.channels.webchat_session import open_session, sign_session, verified_customer
from bot.desk import HandoffDesk, shopper_topic
from bot.engine import Engine, InputRejected
from bot.settings import Settings
from bot.state.locks import KeyedLocks
from bot.state.seen import SeenMessages
from bot.types import Conversation, InboundMessage

log = logging.getLogger(__name__)

CHANNEL = "webchat"
STATIC = Path(__file__).resolve().parents[1] / "static"
HELLO_TIMEOUT_S = 30.0
POLICY_VIOLATION = 1008  # websocket close code: the origin may not use the widget


@dataclass
class _Bucket:
    """Messages a session may still send now; refilled continuously (a token bucket)."""

    tokens: float
    updated: float = field(default_factory=time.monotonic)


class WebChat:
    """The websocket side of the widget for one process."""

    def __init__(self, settings: Settings, session_secret: bytes) -> None:
        self.settings = settings
        self.widget = settings.widget
        self._session_secret = session_secret
        self._identity_secret = settings.secrets.widget_identity_secret.reveal().encode()
        self._buckets: dict[str, _Bucket] = {}
        self._answering: set[asyncio.Task[None]] = set()  # answers that outlive their socket
        self._turns = KeyedLocks()  # per conversation: one message answered at a time, in arrival order

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Its own origin, a configured one, or no Origin at all (not a browser: CORS is a browser matter)."""
        if origin is None:
            return True
        allowed = self.widget.allowed_origins
        return "*" in allowed or origin in allowed or (host is not None and urlsplit(origin).netloc == host)

    async def serve(self, socket: WebSocket, engine: Engine, seen: SeenMessages, desk: HandoffDesk) -> None:
        """One shopper session, from the hello to the socket closing; operators' messages arrive live."""
        if not self.origin_allowed(socket.headers.get("origin"), socket.headers.get("host")):
            log.warning("webchat: refused a connection from origin %s", socket.headers.get("origin"))
            await socket.close(code=POLICY_VIOLATION)
            return
        await socket.accept()
        socket.state.send_lock = asyncio.Lock()  # replies and operator messages are sent from two tasks
        try:
            hello = await asyncio.wait_for(self._receive(socket), timeout=HELLO_TIMEOUT_S)
            if hello is None or hello.get("type") != "hello":
                await _send(socket, type="error", text="a session starts with a hello")
                await socket.close(code=POLICY_VIOLATION)
                return
            conversation_id = self._conversation_id(hello)
            # Listen before reading the history: a reply stored after the read is then heard live.
            async with desk.bus.subscribe(shopper_topic(conversation_id)) as frames:
                session = await self._start(socket, engine, hello, conversation_id)
                forward = asyncio.create_task(_forward(socket, frames))
                try:
                    while True:
                        frame = await self._receive(socket)
                        if frame is not None:
                            await self._dispatch(socket, engine, desk, seen, session, frame)
                finally:
                    forward.cancel()
                    with suppress(asyncio.CancelledError):
                        await forward
        except (WebSocketDisconnect, TimeoutError):
            return

    def _conversation_id(self, hello: dict[str, Any]) -> str:
        """The conversation of a valid session token, or a new one."""
        found = open_session(self._session_secret, hello.get("token"), self.settings.state.conversation_ttl_s)
        return found or f"{CHANNEL}:{uuid.uuid4().hex}"

    async def _start(self, socket: WebSocket, engine: Engine, hello: dict[str, Any], conversation_id: str) -> _Session:
        conversation = await engine.store.load(conversation_id)
        customer = verified_customer(self._identity_secret, hello.get("customer"))
        identity = "verified" if customer else "unverified" if hello.get("customer") else "none"
        metadata = self._metadata(hello, customer)
        await _send(socket, type="session", token=sign_session(self._session_secret, conversation_id),
                    conversation_id=conversation_id, history=_history(conversation), identity=identity)
        if "context_dropped" in metadata:
            await _send(socket, type="notice", level="warning", text="The page context was too large and was left out.")
        return _Session(conversation_id, customer or "", metadata)

    def _metadata(self, hello: dict[str, Any], customer: str | None) -> dict[str, Any]:
        """The page, the shop's context (size-limited) and a verified customer id, for the engine."""
        metadata: dict[str, Any] = {}
        if isinstance(hello.get("page"), str):
            metadata["page"] = hello["page"][:2_000]
        if isinstance(hello.get("language"), str):
            metadata["language"] = hello["language"][:16]
        context = hello.get("context")
        if isinstance(context, dict) and context:
            encoded = json.dumps(context, ensure_ascii=False)
            if len(encoded.encode()) <= self.widget.max_context_bytes:
                metadata["context"] = context
            else:
                metadata["context_dropped"] = True
        if customer:
            metadata["customer_id"] = customer
        return metadata

    async def _dispatch(self, socket: WebSocket, engine: Engine, desk: HandoffDesk, seen: SeenMessages,
                        session: _Session, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            # Shielded: a socket that drops mid-answer must not cancel the answer. The message is
            # already marked as received, so a resend on the next socket would not answer it again;
            # its replies reach that socket through the bus (or its history).
            answering = asyncio.create_task(self._message(socket, engine, desk, seen, session, frame))
            self._answering.add(answering)
            answering.add_done_callback(self._answering.discard)
            await asyncio.shield(answering)
        elif kind == "feedback":
            reply_id, value = frame.get("reply_id"), frame.get("value")
            if not isinstance(reply_id, str) or value not in ("up", "down"):
                await _send(socket, type="error", text="feedback needs a reply_id and a value of up or down")
            elif not await engine.feedback(session.conversation_id, reply_id, str(value)):
                await _send(socket, type="error", text="there is no such reply in this conversation")
        elif kind == "typing":  # operators see it while the conversation waits for or belongs to them
            await desk.shopper_typing(session.conversation_id)
        else:
            await _send(socket, type="error", text=f"unknown frame type {kind!r}")

    async def _message(self, socket: WebSocket, engine: Engine, desk: HandoffDesk, seen: SeenMessages,
                       session: _Session, frame: dict[str, Any]) -> None:
        """Check a message frame, then answer it in its turn."""
        message_id, text = frame.get("id"), frame.get("text")
        if not isinstance(message_id, str) or not 0 < len(message_id) <= 64 or not isinstance(text, str):
            await _try_send(socket, type="error", text="a message needs an id (up to 64 characters) and a text")
            return
        # Answered in the order received, whichever of the conversation's sockets brought them: a
        # message that one socket claimed must not be overtaken by the next one resent on another.
        async with self._turns.hold(session.conversation_id):
            await self._answer(socket, engine, desk, seen, session, message_id, text, frame.get("display"))

    async def _answer(self, socket: WebSocket, engine: Engine, desk: HandoffDesk, seen: SeenMessages,
                      session: _Session, message_id: str, text: str, display: Any) -> None:
        """Answer one message. Typing, drafts and replies go out on the conversation's bus topic, so
        every open socket of the conversation gets them, also one that reconnected meanwhile."""
        if not await seen.first_time(session.conversation_id, message_id):
            await _try_send(socket, type="ack", id=message_id, duplicate=True)  # already answered (or being answered)
            return
        await _try_send(socket, type="ack", id=message_id)
        await self._slow_down(socket, session.conversation_id)
        topic = shopper_topic(session.conversation_id)

        async def draft(reply_id: str, so_far: str) -> None:
            await desk.bus.publish(topic, {"type": "draft", "reply_id": reply_id, "text": so_far})

        inbound = InboundMessage(CHANNEL, session.conversation_id, text, user_id=session.customer,
                                 metadata=session.metadata, display=display[:200] if isinstance(display, str) else "",
                                 message_id=message_id)
        await desk.bus.publish(topic, {"type": "typing", "on": True, "who": "bot"})
        try:
            replies = await engine.handle(inbound, on_draft=draft)
        except InputRejected as exc:
            await _try_send(socket, type="notice", level="warning", text=exc.reply)
            replies = []
        except Exception:  # store down, conversation busy in another tab, a bug: the session goes on
            log.exception("webchat %s: could not answer", session.conversation_id)
            await _try_send(socket, type="notice", level="warning",
                        text="Sorry, I couldn't process that just now. Please send it again in a moment.")
            replies = []
        for reply in replies:
            await desk.bus.publish(topic, reply_frame(reply, reply.kind.value))
        await desk.bus.publish(topic, {"type": "typing", "on": False, "who": "bot"})

    async def _slow_down(self, socket: WebSocket, conversation_id: str) -> None:
        """Hold a message until the session may send again (nothing is dropped), saying so once."""
        rate = self.widget.rate_messages / self.widget.rate_window_s
        now = time.monotonic()
        if len(self._buckets) > 10_000:  # forget sessions whose bucket has refilled: they lose nothing
            self._buckets = {k: b for k, b in self._buckets.items()
                             if b.tokens + (now - b.updated) * rate < self.widget.rate_messages}
        bucket = self._buckets.setdefault(conversation_id, _Bucket(float(self.widget.rate_messages)))
        bucket.tokens = min(self.widget.rate_messages, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / rate
            await _try_send(socket, type="notice", level="info",
                        text=f"You're sending messages very quickly: I'll answer this one in {wait:.0f} s.")
            await asyncio.sleep(wait)
            bucket.tokens, bucket.updated = 1.0, time.monotonic()
        bucket.tokens -= 1

    async def _receive(self, socket: WebSocket) -> dict[str, Any] | None:
        """The next frame as a JSON object; a bad frame gets an error frame and None."""
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:  # a binary frame
            await _send(socket, type="error", text="frames are JSON text, not binary")
            return None
        if len(text.encode()) > self.widget.max_frame_bytes:
            await _send(socket, type="notice", level="warning", text="That message is too long to send.")
            return None
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            await _send(socket, type="error", text="frames are JSON objects with a type")
            return None
        return frame


@dataclass(frozen=True)
class _Session:
    conversation_id: str
    customer: str  # verified customer id, or ""
    metadata: dict[str, Any]


def _history(conversation: Conversation | None) -> list[dict[str, Any]]:
    if conversation is None:
        return []
    return [{"role": t.role, "text": t.text, "id": t.id or "", "route": t.route or t.role}
            for t in conversation.history]


async def _send(socket: WebSocket, **frame: Any) -> None:
    async with socket.state.send_lock:
        await socket.send_text(json.dumps(frame, ensure_ascii=False))


async def _try_send(socket: WebSocket, **frame: Any) -> None:
    """For an answer that goes on after its socket closed: what only that socket would see is dropped."""
    try:
        await _send(socket, **frame)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        log.debug("webchat: a frame for a closed socket was dropped: %s", exc)


async def _forward(socket: WebSocket, frames: Any) -> None:
    """Operators' replies and typing, published for this conversation, to the shopper's widget."""
    async for frame in frames:
        await _send(socket, **frame)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the widget script, the demo shop page, the chat socket and CORS for the allowed origins."""
    secret = settings.secrets.widget_session_secret.reveal().encode()
    if not secret:
        secret = secrets.token_bytes(32)  # sessions then last as long as this process
        if settings.secrets.redis_url:
            log.warning("WIDGET_SESSION_SECRET is not set: widget sessions will not carry over between workers "
                        "or restarts")
    chat = WebChat(settings, secret)
    router = APIRouter()

    @router.get("/widget.js", include_in_schema=False)
    async def widget_script() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=300"})

    @router.get("/", include_in_schema=False)
    async def demo_shop() -> FileResponse:
        return FileResponse(STATIC / "demo.html", media_type="text/html")

    @router.websocket("/ws/chat")
    async def chat_socket(socket: WebSocket) -> None:
        services = socket.state.services
        await chat.serve(socket, services.engine, services.seen_messages, services.desk)

    app.include_router(router)
    if settings.widget.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.widget.allowed_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
