"""POST /api/v1/parse: the NLU verdict and the route, without touching any conversation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import build_app
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, intent_model_dir) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(build_app(make_settings(tmp_path_factory.mktemp("parse"), intent_model_dir))) as client:
        yield client


def test_parse_returns_intent_ranking_entities_and_route(client: TestClient) -> None:
    text = "where is my order 10023?"
    body = client.post("/api/v1/parse", json={"text": text}).json()
    assert body["text"] == text and body["intent"]["name"] == "track_order"
    assert body["route"] == "action" and body["out_of_scope"] is False
    confidences = [r["confidence"] for r in body["intent_ranking"]]
    assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1.0001
    assert body["intent_ranking"][0] == body["intent"]
    (entity,) = [e for e in body["entities"] if e["entity"] == "order_id"]
    assert entity["value"] == "10023" and text[entity["start"]:entity["end"]] == "10023"


def test_asking_for_a_person_routes_to_handoff(client: TestClient) -> None:
    assert client.post("/api/v1/parse", json={"text": "let me talk to a real person"}).json()["route"] == "handoff"


def test_a_button_payload_is_certain(client: TestClient) -> None:
    body = client.post("/api/v1/parse", json={"text": "/track_order"}).json()
    assert body["intent"] == {"name": "track_order", "confidence": 1.0}


def test_parse_stores_nothing(client: TestClient) -> None:
    client.post("/api/v1/parse", json={"text": "hello"})
    assert client.get("/api/v1/conversations/parse-only").status_code == 404


@pytest.mark.parametrize("body", [{"text": ""}, {"text": 5}, {}, {"text": "hi", "extra": 1}])
def test_bad_parse_requests(client: TestClient, body: dict) -> None:
    assert client.post("/api/v1/parse", json=body).status_code == 422
