"""Handing a conversation to people, through the REST API: the bot falls silent while a person is
awaited or in charge, and why the conversation was handed over is summarised for the operator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient

from bot.app import build_app, load_knowledge
from bot.handoff import TeamHours
from bot.mood import is_negative
from bot.settings import Settings
from bot.state.keys import StoreKeys
from tests.conftest import redis_url
from tests.test_conversations import Shopper


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(settings)) as client:
        yield client


def events(settings: Settings, conversation_id: str) -> list[dict]:
    raw = redis.Redis.from_url(redis_url()).lrange(StoreKeys(settings.state.key_prefix).events(conversation_id), 0, -1)
    return [json.loads(e) for e in raw]


def test_after_asking_for_a_person_the_bot_stays_silent(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("where is my order 10023?")
    handed = shopper.hears("I want to talk to a real person")
    assert "team" in handed
    for text in ("where is my order 10023?", "hello?"):
        reply = client.post("/api/v1/messages", json={"conversation_id": shopper.conversation_id, "text": text})
        assert reply.status_code == 200 and reply.json()["replies"] == [], "no bot answer while a person is awaited"
    conversation = client.get(f"/api/v1/conversations/{shopper.conversation_id}").json()
    assert conversation["mode"] == "pending_human"
    assert [t["role"] for t in conversation["history"]][-3:] == ["bot", "user", "user"], "the shopper's words are kept"
    queued = [e["data"] for e in events(settings, shopper.conversation_id) if e["kind"] == "queued"]
    assert len(queued) == 1 and queued[0]["reason"] == "the shopper asked for a person"
    summary = queued[0]["summary"]
    assert summary["slots"].get("order_id") == "10023"
    assert [i["intent"] for i in summary["intents"]] == ["track_order", "contact_human_agent"]
    assert "talk to a real person" in summary["last_messages"][-2]["text"]


def test_three_messages_the_bot_cannot_answer_hand_the_conversation_over(client: TestClient) -> None:
    shopper = Shopper(client)
    for text in ("blorp fizzle wamble", "qwfp arst zxcv", "mmm ggg hhh jjj"):
        last = shopper.says(text)
    assert "passing this conversation to a member of our team" in last[-1]["text"]
    assert client.get(f"/api/v1/conversations/{shopper.conversation_id}").json()["mode"] == "pending_human"


def test_the_team_s_hours_decide_what_the_shopper_is_told(settings: Settings) -> None:
    team = TeamHours.from_facts(load_knowledge(settings).facts["team"])
    saturday_night = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    assert not team.is_open(saturday_night)
    assert team.describe_next_opening(saturday_night) == "on Monday at 08:00 (CET)"
    assert team.is_open(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    assert team.describe_next_opening(datetime(2026, 12, 2, 5, 0, tzinfo=UTC)) == "today at 08:00 (CET)"


def test_three_unhappy_messages_in_a_row_hand_the_conversation_over(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("this is ridiculous, where is my order 10023?")
    shopper.hears("the delivery is a joke, terrible service")
    last = shopper.says("I'm fed up, this is the worst shop ever")
    assert "frustrating" in last[-1]["text"]
    assert client.get(f"/api/v1/conversations/{shopper.conversation_id}").json()["mode"] == "pending_human"
    queued = [e["data"] for e in events(settings, shopper.conversation_id) if e["kind"] == "queued"]
    assert queued[0]["reason"].startswith("the shopper seems upset")


@pytest.mark.parametrize(("text", "negative"), [
    ("this is ridiculous, worst service ever", True),
    ("not helpful at all", True),
    ("WHERE IS MY PARCEL!!! this is a joke", True),
    ("where is my order 10023?", False),
    ("thanks, that was helpful", False),
    ("the jacket is not bad at all", False),
    ("do you sell the Killer Heels in size 38?", False),
])
def test_what_counts_as_an_unhappy_message(text: str, negative: bool) -> None:
    assert is_negative(text) is negative
