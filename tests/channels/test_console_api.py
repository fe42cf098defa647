"""The operator console's API and live channel through the real app: who may use it, the handoff
from queue to operator and back, and operator replies reaching the widget and Telegram."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bot.app import build_app
from bot.channels.telegram_delivery import SECRET_HEADER
from bot.operators import OperatorAccounts
from bot.settings import Settings
from tests.channels.test_telegram import SECRET, telegram_settings
from tests.channels.test_webchat import Widget
from tests.conftest import make_settings, redis_url
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.telegram_updates import UpdateFactory
from tests.test_conversations import Shopper

PASSWORD = "correct horse battery"


def add_operators(path: Path) -> None:
    accounts = OperatorAccounts(path)
    accounts.add("alice", PASSWORD, "Alice Moreau")
    accounts.add("bob", PASSWORD, "Bob")


@pytest.fixture
def console_settings(tmp_path: Path, intent_model_dir: Path, redis_prefix: str) -> Settings:
    add_operators(tmp_path / "operators.json")
    return make_settings(tmp_path, intent_model_dir, REDIS_URL=redis_url(), SHOPBOT_STATE__KEY_PREFIX=redis_prefix,
                         SHOPBOT_CONSOLE__OPERATORS_FILE=str(tmp_path / "operators.json"))


@pytest.fixture
def client(console_settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(console_settings)) as client:
        yield client


class Operator:
    """A logged-in console session: its cookie is sent explicitly, so several share one app client."""

    def __init__(self, client: TestClient, username: str) -> None:
        self.client = client
        login = client.post("/console/api/login", json={"username": username, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.csrf = login.json()["csrf"]
        self.cookie = {"cookie": f"shopbot_console={login.cookies['shopbot_console']}"}
        client.cookies.clear()

    def get(self, path: str) -> Any:
        response = self.client.get(f"/console/api{path}", headers=self.cookie)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        response = self.client.post(f"/console/api{path}", json=body or {},
                                    headers={"X-CSRF-Token": self.csrf, **self.cookie})
        assert response.status_code == status, response.text
        return response.json() if response.content else None


def waiting_ids(operator: Operator) -> list[str]:
    return [c["id"] for c in operator.get("/conversations?view=waiting")["conversations"]]


ENDPOINTS = [("GET", "/console/api/me"), ("GET", "/console/api/conversations?view=waiting"),
             ("GET", "/console/api/conversations/x"), ("GET", "/console/api/canned"),
             ("POST", "/console/api/logout")] + [("POST", f"/console/api/conversations/x/{a}") for a in (
              "take", "reply", "note", "draft", "handback", "resolve", "typing")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_console_endpoint_refuses_strangers_and_other_sites(client: TestClient, method: str,
                                                                   path: str) -> None:
    assert client.request(method, path, json={"text": "hi"}).status_code == 401
    operator = Operator(client, "alice")
    evil = {"origin": "https://evil.example.net", "X-CSRF-Token": operator.csrf, **operator.cookie}
    assert client.request(method, path, json={"text": "hi"}, headers=evil).status_code == 403
    site = {"sec-fetch-site": "cross-site", "X-CSRF-Token": operator.csrf, **operator.cookie}
    assert client.request(method, path, json={"text": "hi"}, headers=site).status_code == 403
    if method == "POST":  # logged in, same site, but no CSRF token
        assert client.post(path, json={"text": "hi"}, headers=operator.cookie).status_code == 403


def test_the_live_channel_refuses_strangers(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/console/ws") as socket:
        socket.receive_json()
    assert refused.value.code == 4401


def test_five_failed_logins_lock_the_account_and_unknown_names_look_the_same(client: TestClient) -> None:
    wrong = client.post("/console/api/login", json={"username": "alice", "password": "not it at all"})
    unknown = client.post("/console/api/login", json={"username": "mallory", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "wrong username or password"}
    for _ in range(4):
        client.post("/console/api/login", json={"username": "alice", "password": "still wrong"})
    locked = client.post("/console/api/login", json={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429 and "try again" in locked.json()["detail"]
    for _ in range(5):
        client.post("/console/api/login", json={"username": "mallory", "password": "guess"})
    assert client.post("/console/api/login", json={"username": "mallory", "password": "x"}).status_code == 429
    assert Operator(client, "bob").get("/me")["operator"]["username"] == "bob", "others are not locked"


def test_a_new_session_cookie_at_every_login_and_it_is_httponly_and_strict(client: TestClient) -> None:
    first = client.post("/console/api/login", json={"username": "alice", "password": PASSWORD})
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    old = first.cookies["shopbot_console"]
    second = client.post("/console/api/login", json={"username": "alice", "password": PASSWORD})
    assert second.cookies["shopbot_console"] != old
    client.cookies.clear()
    assert client.get("/console/api/me", headers={"cookie": f"shopbot_console={old}"}).status_code == 401, \
        "the old session ended at the new login"


def test_from_queue_to_operator_and_back_to_the_bot(client: TestClient) -> None:
    shopper = Shopper(client)
    shopper.hears("where is my order 10023?")
    shopper.hears("I want to talk to a real person")
    alice, bob = Operator(client, "alice"), Operator(client, "bob")
    assert shopper.conversation_id in waiting_ids(alice)
    view = alice.get(f"/conversations/{shopper.conversation_id}")
    assert view["state"] == "waiting" and view["summary"]["reason"] == "the shopper asked for a person"
    assert view["summary"]["slots"]["order_id"] == "10023"
    taken = alice.post(f"/conversations/{shopper.conversation_id}/take")
    assert taken["state"] == "human" and taken["operator"] == "alice"
    assert bob.post(f"/conversations/{shopper.conversation_id}/take", status=409)["detail"] == "already taken by alice"
    assert bob.post(f"/conversations/{shopper.conversation_id}/reply", {"text": "me too"}, status=409)
    alice.post(f"/conversations/{shopper.conversation_id}/reply", {"text": "Hi, Alice here. Let me check 10023."})
    alice.post(f"/conversations/{shopper.conversation_id}/note", {"text": "customer is in a hurry"})
    silent = client.post("/api/v1/messages", json={"conversation_id": shopper.conversation_id,
                                                    "text": "where is my order 10023?"}).json()
    assert silent["replies"] == [], "the bot stays silent while a person answers"
    mine = alice.get("/conversations?view=mine")["conversations"]
    assert [c["id"] for c in mine] == [shopper.conversation_id] and mine[0]["unread"] >= 1
    view = alice.get(f"/conversations/{shopper.conversation_id}")
    assert [t["role"] for t in view["transcript"]][-2:] == ["operator", "user"]
    assert view["notes"][0]["text"] == "customer is in a hurry"
    alice.post(f"/conversations/{shopper.conversation_id}/handback", {"note": "sorted"})
    assert "JJD0001234567" in shopper.hears("where is my order 10023?"), "the bot answers again"
    alice.post(f"/conversations/{shopper.conversation_id}/resolve")
    assert shopper.conversation_id in [c["id"] for c in alice.get("/conversations?view=resolved")["conversations"]]


def test_bad_operator_input_gets_clear_errors(client: TestClient) -> None:
    alice = Operator(client, "alice")
    assert alice.post("/conversations/nope/take", status=404)["detail"] == "no conversation 'nope'"
    shopper = Shopper(client)
    shopper.hears("I want a human")
    alice.post(f"/conversations/{shopper.conversation_id}/reply", {"text": "hi"}, status=409)  # not taken yet
    alice.post(f"/conversations/{shopper.conversation_id}/take")
    for body in ({}, {"text": ""}, {"text": 5}, {"text": "x" * 5000}, {"text": "hi", "extra": 1}):
        assert "detail" in alice.post(f"/conversations/{shopper.conversation_id}/reply", body, status=422)
    raw = client.post(f"/console/api/conversations/{shopper.conversation_id}/reply", content=b"{nope",
                      headers={"X-CSRF-Token": alice.csrf, **alice.cookie})
    assert raw.status_code == 422
    assert alice.post(f"/conversations/{shopper.conversation_id}/draft", status=503)["detail"].startswith("no gen")
    assert client.get("/console/api/conversations?view=everything", headers=alice.cookie).status_code == 422


def test_the_operator_reply_reaches_the_widget_live_and_a_new_handoff_reaches_the_console(
        client: TestClient) -> None:
    alice = Operator(client, "alice")
    with client.websocket_connect("/console/ws", headers=alice.cookie) as console, client.websocket_connect(
            "/ws/chat", headers={"origin": "http://testserver"}) as socket:
        shopper = Widget(socket)
        session = shopper.hello()
        shopper.says("I want to talk to a person")
        frame = console.receive_json()
        assert frame["type"] == "conversation" and frame["conversation"]["id"] == session["conversation_id"]
        assert frame["conversation"]["state"] == "waiting"
        shown = alice.get(f"/conversations/{session['conversation_id']}")["summary"]["shopper"]
        assert shown["page"] == "http://testserver/", "the operator sees which page the shopper is on"
        alice.post(f"/conversations/{session['conversation_id']}/take")
        alice.post(f"/conversations/{session['conversation_id']}/typing", status=204)
        assert shopper.socket.receive_json() == {"type": "typing", "on": True, "who": "operator"}
        alice.post(f"/conversations/{session['conversation_id']}/reply", {"text": "Hello from Alice!"})
        reply = shopper.next("reply")
        assert reply["text"] == "Hello from Alice!" and reply["route"] == "operator"
        socket.send_json({"type": "typing"})
        while (frame := console.receive_json())["type"] != "typing":
            pass
        assert frame == {"type": "typing", "conversation_id": session["conversation_id"], "who": "shopper"}


def test_the_operator_reply_reaches_the_telegram_chat(tmp_path: Path, intent_model_dir: Path,
                                                     redis_prefix: str) -> None:
    add_operators(tmp_path / "operators.json")
    with FakeTelegram() as tg:
        settings = telegram_settings(tmp_path, intent_model_dir, tg, redis_prefix,
                                     SHOPBOT_CONSOLE__OPERATORS_FILE=str(tmp_path / "operators.json"))
        updates = UpdateFactory(tg.bot_username, tg.bot_id)
        with TestClient(build_app(settings)) as client:
            client.post("/telegram/webhook", json=updates.text(7001, "/human"), headers={SECRET_HEADER: SECRET})
            assert "team" in tg.wait_for_messages(7001, 1)[0].text
            alice = Operator(client, "alice")
            alice.post("/conversations/telegram:7001/take")
            typing_before = len(tg.calls("sendChatAction"))
            alice.post("/conversations/telegram:7001/typing", status=204)
            assert len(tg.calls("sendChatAction")) == typing_before + 1, "the shopper sees Alice typing"
            alice.post("/conversations/telegram:7001/reply", {"text": f"Alice here {uuid.uuid4().hex[:6]}"})
            assert tg.wait_for_messages(7001, 2)[1].text.startswith("Alice here")


def test_the_operator_reply_is_posted_to_a_rest_client_s_callback(tmp_path: Path, intent_model_dir: Path,
                                                                 redis_prefix: str) -> None:
    received: list[dict[str, Any]] = []

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    add_operators(tmp_path / "operators.json")
    settings = make_settings(tmp_path, intent_model_dir, REDIS_URL=redis_url(), SHOPBOT_STATE__KEY_PREFIX=redis_prefix,
                             SHOPBOT_CONSOLE__OPERATORS_FILE=str(tmp_path / "operators.json"),
                             SHOPBOT_CONSOLE__CALLBACK_HOSTS="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/shopbot-replies"
    try:
        with TestClient(build_app(settings)) as client:
            refused = client.post("/api/v1/messages", json={"text": "hi", "metadata": {
                "callback_url": "http://169.254.169.254/latest"}})
            assert refused.status_code == 422 and "callback_hosts" in refused.json()["detail"]
            sent = client.post("/api/v1/messages", json={"conversation_id": "app-1", "text": "I want a human",
                                                         "metadata": {"callback_url": url}})
            assert sent.status_code == 200
            alice = Operator(client, "alice")
            alice.post("/conversations/app-1/take")
            alice.post("/conversations/app-1/reply", {"text": "Alice here, how can I help?"})
    finally:
        server.shutdown()
    assert received == [{"conversation_id": "app-1", "reply": {
        "text": "Alice here, how can I help?", "buttons": [], "kind": "handoff", "id": received[0]["reply"]["id"],
        "route": "operator"}}]


def test_the_console_pages_serve_only_their_own_files(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    script = client.get("/console/console.js?file=../../../pyproject.toml&kind=text/plain")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "[project]" not in script.text, "a query string cannot pick another file"
