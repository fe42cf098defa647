"""Bad input gets a clear 4xx or a polite reply: never a 500, never a lost or corrupted conversation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import build_app
from bot.settings import Settings

CID = "bad-input"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, intent_model_dir) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    from tests.conftest import make_settings

    settings: Settings = make_settings(tmp_path_factory.mktemp("bad"), intent_model_dir)  # memory store
    with TestClient(build_app(settings), raise_server_exceptions=False) as client:
        ok = client.post("/api/v1/messages", json={"conversation_id": CID, "text": "where is my order 10023"})
        assert ok.status_code == 200
        yield client


def history(client: TestClient) -> list[dict]:
    return client.get(f"/api/v1/conversations/{CID}").json()["history"]


def post(client: TestClient, **kwargs) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/messages", **kwargs)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"conversation_id": CID, "text": ""}, 422, "text is empty"),
        ({"conversation_id": CID, "text": "   \n\t "}, 422, "text is empty"),
        ({"conversation_id": CID, "text": "\u200b\u200b\x00\x1b"}, 422, "text is empty"),
        ({"conversation_id": CID, "text": "x" * 5000}, 422, "longer than 4000"),
        ({"conversation_id": CID, "text": 123}, 422, "text: Input should be a valid string"),
        ({"conversation_id": CID, "text": None}, 422, "text: Input should be a valid string"),
        ({"conversation_id": CID, "text": ["hi"]}, 422, "text: Input should be a valid string"),
        ({"conversation_id": CID}, 422, "text: Field required"),
        ({"conversation_id": 5, "text": "hi"}, 422, "conversation_id: Input should be a valid string"),
        ({"conversation_id": "", "text": "hi"}, 422, "conversation_id"),
        ({"conversation_id": CID, "text": "hi", "metadata": "page"}, 422, "metadata"),
        ({"conversation_id": CID, "text": "hi", "admin": True}, 422, "admin: Extra inputs are not permitted"),
    ],
)
def test_bad_message_bodies_get_a_clear_4xx(client: TestClient, body: dict, status: int, says: str) -> None:
    before = history(client)
    code, answer = post(client, json=body)
    assert code == status
    assert says in answer["detail"]
    assert history(client) == before  # nothing stored, nothing lost


def test_rejected_text_comes_with_a_polite_reply_for_the_shopper(client: TestClient) -> None:
    code, answer = post(client, json={"conversation_id": CID, "text": "y" * 5000})
    assert code == 422 and "shorter message" in answer["reply"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "says"),
    [
        (b'{"conversation_id": "bad-input", "text": ', "application/json", 422, "JSON decode error"),
        (b"\xff\xfe\x00binary\x00\x9c", "application/json", 400, "error parsing the body"),
        (b"text=hi", "application/x-www-form-urlencoded", 422, "Input should be a valid dictionary"),
        (b"[1, 2, 3]", "application/json", 422, "Input should be a valid dictionary"),
        (b"null", "application/json", 422, "Input should be a valid dictionary"),
    ],
)
def test_malformed_and_binary_bodies(client: TestClient, content: bytes, content_type: str, status: int,
                                     says: str) -> None:
    before = history(client)
    code, answer = post(client, content=content, headers={"content-type": content_type})
    assert code == status and says in answer["detail"]
    assert history(client) == before


def test_a_100_kb_body_is_refused_before_it_is_read(client: TestClient) -> None:
    code, answer = post(client, json={"conversation_id": CID, "text": "a" * 100_000})
    assert code == 413 and "larger than" in answer["detail"]


def test_control_and_invisible_characters_are_removed_not_stored(client: TestClient) -> None:
    text = "where\u200b is\x00 my order\u202e 10023\x1b[31m"
    code, answer = post(client, json={"conversation_id": CID, "text": text})
    assert code == 200 and "10023" in answer["replies"][0]["text"]
    stored = history(client)[-2]["text"]
    assert stored == "where is my order 10023[31m"


def test_hostile_text_is_answered_politely(client: TestClient) -> None:
    for text in ("<script>alert(1)</script>", "'; DROP TABLE orders; --", "{{ shop.support_email }}", "%s%s%n"):
        code, answer = post(client, json={"conversation_id": CID, "text": text})
        assert code == 200 and answer["replies"]
        assert all("{{" not in r["text"] for r in answer["replies"])


def test_a_new_conversation_gets_an_id(client: TestClient) -> None:
    code, answer = post(client, json={"text": "hello"})
    assert code == 200 and len(answer["conversation_id"]) == 32


def test_health_readiness_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] is True
    schema = client.get("/openapi.json").json()
    assert "/api/v1/messages" in schema["paths"]


def test_unknown_conversation_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/conversations/nobody-here").status_code == 404


def test_redis_down_is_a_503_not_a_500(tmp_path, intent_model_dir) -> None:  # type: ignore[no-untyped-def]
    import socket

    from tests.conftest import make_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(tmp_path, intent_model_dir, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    with TestClient(build_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/api/v1/messages", json={"conversation_id": "x", "text": "hello"})
        assert response.status_code == 503 and "unavailable" in response.json()["detail"]
        assert client.get("/readyz").status_code == 503


def test_a_reply_can_be_rated_and_bad_ratings_are_refused(client: TestClient) -> None:
    sent = client.post("/api/v1/messages", json={"conversation_id": "rate-1", "text": "where is my order 10023?"})
    reply_id = sent.json()["replies"][0]["id"]
    assert reply_id
    url = "/api/v1/conversations/rate-1/feedback"
    assert client.post(url, json={"reply_id": reply_id, "value": "up"}).status_code == 204
    assert client.post(url, json={"reply_id": "nope", "value": "up"}).status_code == 404
    for body in ({"reply_id": reply_id, "value": "meh"}, {"reply_id": reply_id}, {"value": "up"}, []):
        assert client.post(url, json=body).status_code == 422
