"""Out-of-scope messages never reach a support action (the real classifier, through the REST API).

The messages come from data/tests/out_of_scope.yml: written for these tests (other domains,
chit-chat, gibberish, other languages), never trained on. The out_of_scope intent's training
negatives in data/nlu.yml were written separately, without looking at this file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from fastapi.testclient import TestClient

from bot.app import build_app
from tests.conftest import ROOT, make_settings

MESSAGES: list[str] = yaml.safe_load((ROOT / "data" / "tests" / "out_of_scope.yml").read_text())["messages"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, intent_model_dir) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(build_app(make_settings(tmp_path_factory.mktemp("oos"), intent_model_dir))) as client:
        yield client


def test_the_test_set_is_large_and_varied() -> None:
    assert len(MESSAGES) >= 100 and len(set(MESSAGES)) == len(MESSAGES)


def test_no_out_of_scope_message_is_routed_to_a_support_action(client: TestClient) -> None:
    routed = {text: client.post("/api/v1/parse", json={"text": text}).json() for text in MESSAGES}

    wrong = {text: (body["intent"]["name"], round(body["intent"]["confidence"], 2))
             for text, body in routed.items() if body["route"] == "action"}
    assert not wrong, f"{len(wrong)} of {len(MESSAGES)} out-of-scope messages reached a support action: {wrong}"
    assert all(body["route"] in {"fallback", "generator", "clarify"} for body in routed.values())


@pytest.mark.parametrize(
    "text",
    [
        "what's the capital of australia",
        "tell me a joke",
        "xkcd qwop zzzz",
        "¿dónde está la estación de tren?",
        "how do i cancel my gym membership",
    ],
)
def test_an_out_of_scope_message_in_a_conversation_gets_no_support_answer(client: TestClient, text: str) -> None:
    conversation = f"oos-{abs(hash(text))}"
    client.post("/api/v1/messages", json={"conversation_id": conversation, "text": "hi"})

    replies = client.post("/api/v1/messages", json={"conversation_id": conversation, "text": text}).json()["replies"]
    history = client.get(f"/api/v1/conversations/{conversation}").json()["history"]

    assert replies and all(r["kind"] in {"fallback", "generator"} for r in replies)
    (asked,) = [t for t in history if t["role"] == "user" and t["text"] == text]
    assert asked["route"] in {"fallback", "generator"}
