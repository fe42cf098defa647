"""The widget's websocket protocol through the real app: sessions, history, resends, limits, origins."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from bot.app import build_app
from bot.channels.webchat import WebChat
from bot.channels.webchat_session import identity_signature, open_session, sign_session
from bot.settings import Settings
from bot.state.keys import StoreKeys
from tests.conftest import make_settings, redis_url

SHOP_SECRET = "the-shops-identity-secret"


@pytest.fixture
def chat_settings(tmp_path: Path, intent_model_dir: Path, redis_prefix: str) -> Settings:
    return make_settings(tmp_path, intent_model_dir, REDIS_URL=redis_url(), SHOPBOT_STATE__KEY_PREFIX=redis_prefix,
                         WIDGET_SESSION_SECRET="sessions-secret", WIDGET_IDENTITY_SECRET=SHOP_SECRET,
                         SHOPBOT_WIDGET__ALLOWED_ORIGINS="https://shop.example.com",
                         SHOPBOT_WIDGET__RATE_MESSAGES="3", SHOPBOT_WIDGET__RATE_WINDOW_S="3")


@pytest.fixture
def client(chat_settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(chat_settings)) as client:
        yield client


class Widget:
    """One open widget: frames in, frames out."""

    def __init__(self, socket: WebSocketTestSession) -> None:
        self.socket = socket

    def hello(self, token: str | None = None, **extra: Any) -> dict[str, Any]:
        self.socket.send_json({"type": "hello", "token": token, "page": "http://testserver/", **extra})
        return self.next("session")

    def next(self, kind: str) -> dict[str, Any]:
        """The next frame of `kind`, skipping typing indicators and drafts."""
        while True:
            frame = self.socket.receive_json()
            if frame["type"] == kind:
                return frame
            assert frame["type"] in ("typing", "draft", "notice"), frame

    def says(self, text: str, message_id: str | None = None) -> list[dict[str, Any]]:
        """Send a message; its replies, read until the bot stops typing."""
        message_id = message_id or uuid.uuid4().hex
        self.socket.send_json({"type": "message", "id": message_id, "text": text})
        assert self.next("ack")["id"] == message_id
        replies = []
        while (frame := self.socket.receive_json())["type"] != "typing" or frame["on"]:
            if frame["type"] == "reply":
                replies.append(frame)
        return replies


def widget(client: TestClient, origin: str = "http://testserver") -> Any:
    return client.websocket_connect("/ws/chat", headers={"origin": origin})


def test_a_conversation_continues_after_a_reconnect_with_its_history(client: TestClient) -> None:
    with widget(client) as socket:
        shopper = Widget(socket)
        session = shopper.hello()
        assert session["history"] == [] and session["identity"] == "none"
        replies = shopper.says("where is my order 10023?")
        assert "JJD0001234567" in replies[0]["text"] and replies[0]["route"] == "action" and replies[0]["reply_id"]
    with widget(client) as socket:
        again = Widget(socket).hello(session["token"])
    assert again["conversation_id"] == session["conversation_id"]
    assert [t["role"] for t in again["history"]] == ["user", "bot"]
    assert again["history"][1]["id"] == replies[0]["reply_id"] and "JJD0001234567" in again["history"][1]["text"]


def test_a_message_resent_after_a_dropped_connection_is_answered_once(client: TestClient) -> None:
    with widget(client) as socket:
        shopper = Widget(socket)
        token = shopper.hello()["token"]
        assert shopper.says("hello", message_id="m-1")
    with widget(client) as socket:
        shopper = Widget(socket)
        session = shopper.hello(token)
        socket.send_json({"type": "message", "id": "m-1", "text": "hello"})
        assert socket.receive_json() == {"type": "ack", "id": "m-1", "duplicate": True}
        assert shopper.says("thank you")
    conversation = client.get(f"/api/v1/conversations/{session['conversation_id']}").json()
    assert [t["text"] for t in conversation["history"] if t["role"] == "user"] == ["hello", "thank you"]


def test_messages_claimed_on_two_sockets_are_answered_in_the_order_typed(client: TestClient,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Back online, the browser delivers what the old socket held and the widget resends it all on
    a new one: the new socket's next message must wait for the old socket's answer."""
    slow_down = WebChat._slow_down
    calls = []

    async def late_first_answer(self: WebChat, socket: Any, conversation_id: str) -> None:
        calls.append(conversation_id)
        if len(calls) == 1:  # the old socket's answer is slow to start, after its ack
            await asyncio.sleep(0.5)
        await slow_down(self, socket, conversation_id)

    monkeypatch.setattr(WebChat, "_slow_down", late_first_answer)
    with widget(client) as old_socket, widget(client) as new_socket:
        token = Widget(old_socket).hello()["token"]
        Widget(new_socket).hello(token)
        old_socket.send_json({"type": "message", "id": "m-1", "text": "where is my order 10023?"})
        assert old_socket.receive_json() == {"type": "ack", "id": "m-1"}
        new_socket.send_json({"type": "message", "id": "m-1", "text": "where is my order 10023?"})
        new_socket.send_json({"type": "message", "id": "m-2", "text": "thank you"})
        frames = []
        while len(replies := [f["text"] for f in frames if f["type"] == "reply"]) < 2:
            frames.append(new_socket.receive_json())
    assert "JJD0001234567" in replies[0] and "welcome" in replies[1].lower()
    assert {"type": "ack", "id": "m-1", "duplicate": True} in frames and {"type": "ack", "id": "m-2"} in frames


def test_a_forged_or_foreign_token_starts_a_new_conversation(client: TestClient) -> None:
    forged = sign_session(b"someone-elses-secret", "webchat:victim")
    with widget(client) as socket:
        session = Widget(socket).hello(forged)
    assert session["conversation_id"] != "webchat:victim" and session["history"] == []
    assert open_session(b"sessions-secret", session["token"], 60) == session["conversation_id"]
    assert open_session(b"sessions-secret", session["token"] + "0", 60) is None
    assert open_session(b"sessions-secret", session["token"], -1) is None, "expired"


def test_other_origins_are_refused_at_the_handshake(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, widget(client, "https://evil.example.net") as socket:
        socket.receive_json()
    assert refused.value.code == 1008
    with widget(client, "https://shop.example.com") as socket:  # configured in widget.allowed_origins
        assert Widget(socket).hello()["token"]


def test_cors_lets_only_the_allowed_origins_read_the_api(client: TestClient) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    allowed = client.options("/api/v1/messages", headers={"origin": "https://shop.example.com", **preflight})
    assert allowed.headers.get("access-control-allow-origin") == "https://shop.example.com"
    foreign = client.options("/api/v1/messages", headers={"origin": "https://evil.example.net", **preflight})
    assert "access-control-allow-origin" not in foreign.headers


def test_bad_frames_get_clear_errors_and_the_session_goes_on(client: TestClient) -> None:
    with widget(client) as socket:
        shopper = Widget(socket)
        shopper.hello()
        socket.send_text("{not json")
        assert socket.receive_json()["type"] == "error"
        socket.send_bytes(b"\xff\xfe binary")
        assert socket.receive_json()["type"] == "error"
        socket.send_json(["a", "list"])
        assert socket.receive_json()["type"] == "error"
        socket.send_json({"type": "launch_rockets"})
        assert "unknown frame type" in socket.receive_json()["text"]
        socket.send_json({"type": "message", "text": "no id"})
        assert "needs an id" in socket.receive_json()["text"]
        socket.send_json({"type": "message", "id": "x" * 20, "text": "y" * 20_000})
        assert "too long" in socket.receive_json()["text"]
        socket.send_json({"type": "message", "id": "empty", "text": "   "})
        assert socket.receive_json()["type"] == "ack"
        assert "didn't get any text" in shopper.next("notice")["text"]
        assert "JJD0001234567" in shopper.says("where is my order 10023?")[0]["text"]


def test_feedback_is_kept_with_the_route_of_the_rated_reply(client: TestClient, chat_settings: Settings) -> None:
    with widget(client) as socket:
        shopper = Widget(socket)
        session = shopper.hello()
        reply = shopper.says("where is my order 10023?")[0]
        socket.send_json({"type": "feedback", "reply_id": reply["reply_id"], "value": "up"})
        socket.send_json({"type": "feedback", "reply_id": "not-a-reply", "value": "up"})
        assert "no such reply" in socket.receive_json()["text"]
    stored = redis.Redis.from_url(redis_url()).lrange(StoreKeys(chat_settings.state.key_prefix).events(
        session["conversation_id"]), 0, -1)
    feedback = [e["data"] for e in map(json.loads, stored) if e["kind"] == "feedback"]
    assert feedback == [{"reply": reply["reply_id"], "value": "up", "route": "action", "role": "bot"}]
    user = next(e["data"] for e in map(json.loads, stored) if e["kind"] == "user")
    assert user["channel"] == "webchat" and user["metadata"]["page"] == "http://testserver/"


def test_a_signed_customer_id_is_accepted_and_a_forged_one_is_not(client: TestClient,
                                                                  chat_settings: Settings) -> None:
    good = {"id": "cust-42", "signature": identity_signature(SHOP_SECRET.encode(), "cust-42")}
    with widget(client) as socket:
        shopper = Widget(socket)
        session = shopper.hello(customer=good, context={"cart": ["JL-1001"], "tier": "gold"})
        assert session["identity"] == "verified"
        shopper.says("hello")
    stored = redis.Redis.from_url(redis_url()).lrange(StoreKeys(chat_settings.state.key_prefix).events(
        session["conversation_id"]), 0, -1)
    metadata = next(e["data"]["metadata"] for e in map(json.loads, stored) if e["kind"] == "user")
    assert metadata["customer_id"] == "cust-42" and metadata["context"] == {"cart": ["JL-1001"], "tier": "gold"}
    forged = {"id": "cust-42", "signature": identity_signature(b"guess", "cust-42")}
    with widget(client) as socket:
        assert Widget(socket).hello(customer=forged)["identity"] == "unverified"


def test_a_shopper_sending_too_fast_is_slowed_down_not_dropped(client: TestClient) -> None:
    with widget(client) as socket:
        shopper = Widget(socket)
        shopper.hello()
        notices = []
        for i in range(5):
            socket.send_json({"type": "message", "id": f"fast-{i}", "text": "hello"})
            assert shopper.next("ack")["id"] == f"fast-{i}"
            while (frame := socket.receive_json())["type"] != "reply":
                if frame["type"] == "notice":
                    notices.append(frame["text"])
            while socket.receive_json() != {"type": "typing", "on": False, "who": "bot"}:
                pass
    assert notices and "very quickly" in notices[0], "told, and still answered"


def test_the_widget_script_and_the_demo_shop_are_served(client: TestClient) -> None:
    script = client.get("/widget.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert len(script.content) < 30_000, "the widget stays small"
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/widget.js"' in page.text


def test_a_button_press_is_kept_in_the_transcript_under_its_title(client: TestClient) -> None:
    with widget(client) as socket:
        shopper = Widget(socket)
        session = shopper.hello()
        socket.send_json({"type": "message", "id": "b-1", "text": "/track_order", "display": "Where is my order?"})
        assert shopper.next("ack")["id"] == "b-1"
        assert "order number" in shopper.next("reply")["text"]
    with widget(client) as socket:
        history = Widget(socket).hello(session["token"])["history"]
    assert history[0]["role"] == "user" and history[0]["text"] == "Where is my order?"
