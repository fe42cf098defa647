"""Transcripts through the REST API: real fine-tuned classifier, real Redis, real demo order store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import build_app, load_knowledge, open_orders
from bot.settings import Settings


class Shopper:
    """One conversation through POST /api/v1/messages."""

    def __init__(self, client: TestClient, conversation_id: str | None = None) -> None:
        self.client = client
        self.conversation_id = conversation_id or f"t-{uuid.uuid4().hex[:10]}"

    def says(self, text: str) -> list[dict]:
        response = self.client.post("/api/v1/messages", json={"conversation_id": self.conversation_id,
                                                               "text": text})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["conversation_id"] == self.conversation_id
        assert body["replies"], f"no reply to {text!r}"
        return body["replies"]

    def hears(self, text: str) -> str:
        """All reply texts to `text`, joined."""
        return "\n".join(r["text"] for r in self.says(text))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(settings)) as client:
        yield client


def order(settings: Settings, order_id: str):  # type: ignore[no-untyped-def]
    """The order as the store now has it (read outside the bot)."""
    return asyncio.run(open_orders(settings, load_knowledge(settings)).get(order_id))


def test_greet_then_order_status_from_the_store(client: TestClient) -> None:
    shopper = Shopper(client)
    assert "Juniper Lane" in shopper.hears("hi there")
    answer = shopper.hears("where is my order 10023?")
    assert "10023" in answer and "DHL" in answer and "JJD0001234567" in answer
    assert "Expected delivery" in answer


def test_payment_methods_answer_comes_from_the_knowledge_files(client: TestClient) -> None:
    answer = Shopper(client).hears("can I pay with PayPal?")
    for method in ("PayPal", "Visa", "Klarna"):
        assert method in answer


def test_order_lookup_asks_for_the_number_first(client: TestClient) -> None:
    shopper = Shopper(client)
    assert "order number" in shopper.hears("where is my order?")
    answer = shopper.hears("10023")
    assert "JJD0001234567" in answer
    # the number is now a slot: a follow-up about the invoice needs no number
    assert "INV-2026-10023" in shopper.hears("can I get the invoice for it?")


def test_unknown_order_number_is_asked_again(client: TestClient) -> None:
    shopper = Shopper(client)
    assert "couldn't find" in shopper.hears("where is my order 99999")
    assert "JJD0001234567" in shopper.hears("sorry, it's 10023")


def test_cancellation_with_owner_check_and_confirmation(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    assert "email address" in shopper.hears("I want to cancel order 10029")
    replies = shopper.says("julia.hoffmann@example.com")
    assert "Shall I cancel it?" in replies[0]["text"]
    assert [b["payload"] for b in replies[0]["buttons"]] == ["/affirm", "/deny"]
    assert order(settings, "10029").status.value == "paid"  # nothing changes before the yes
    answer = shopper.hears("/affirm")  # the Yes button
    assert "cancelled" in answer and "goes back" in answer
    assert order(settings, "10029").status.value == "cancelled"
    assert "cancelled" in shopper.hears("what's the status of order 10029?")


def test_cancellation_confirmed_by_typing_yes_and_refused_by_no(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("please cancel my order 10034")
    assert "Shall I cancel" in shopper.hears("my email is aylin.demir@example.com")
    assert "haven't changed anything" in shopper.hears("no, keep it")
    assert order(settings, "10034").status.value == "placed"
    shopper.hears("actually cancel order 10034 after all")  # already verified: straight to the question
    assert "cancelled" in shopper.hears("yes please")
    assert order(settings, "10034").status.value == "cancelled"


def test_wrong_email_changes_nothing(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("cancel order 10030")
    assert "doesn't match" in shopper.hears("someone.else@example.com")
    assert order(settings, "10030").status.value == "paid"


def test_shipped_order_cannot_be_cancelled(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("cancel order 10023")
    answer = shopper.hears("mara.lindqvist@example.com")
    assert "can no longer be cancelled" in answer and "€4.95" in answer
    assert order(settings, "10023").status.value == "shipped"


def test_change_of_delivery_address(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("I need to change the shipping address of order 10027")
    assert "new delivery address" in shopper.hears("lena.fischer@example.com")
    assert "Is that right?" in shopper.hears("Lindenstraße 4, 10969 Berlin, Germany")
    assert "Lindenstraße 4" in shopper.hears("yes")
    assert order(settings, "10027").shipping_address == "Lindenstraße 4, 10969 Berlin, Germany"


def test_change_of_item_size(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("can I change something in my order 10029")
    assert "size or colour" in shopper.hears("julia.hoffmann@example.com")
    item = order(settings, "10029").items[0]
    new_size = next(s for s in ("XS", "S", "M", "L", "XL") if s != item.size)
    assert "Shall I go ahead?" in shopper.hears(f"size {new_size} please")
    assert "Done" in shopper.hears("/affirm")
    assert order(settings, "10029").items[0].size == new_size


def test_conversation_survives_a_restart_of_the_bot(settings: Settings) -> None:
    with TestClient(build_app(settings)) as first:
        shopper = Shopper(first)
        assert "order number" in shopper.hears("where's my parcel?")
    with TestClient(build_app(settings)) as second:  # a new process: only Redis remembers
        assert "JJD0001234567" in Shopper(second, shopper.conversation_id).hears("10023")


def test_transcript_is_kept_with_routes(client: TestClient) -> None:
    shopper = Shopper(client)
    shopper.hears("hello")
    shopper.hears("where is order 10023")
    history = client.get(f"/api/v1/conversations/{shopper.conversation_id}").json()["history"]
    assert [t["role"] for t in history] == ["user", "bot", "user", "bot"]
    assert history[2]["intent"] == "track_order" and history[2]["route"] == "action"


def test_a_change_names_its_order_even_when_another_was_discussed(client: TestClient, settings: Settings) -> None:
    shopper = Shopper(client)
    shopper.hears("where is my order 10023?")
    replies = shopper.says("I'd like to cancel an order")
    assert "order number" in replies[0]["text"]  # not silently order 10023
    assert replies[0]["buttons"] == [{"title": "Order 10023", "payload": '/cancel_order{"order_id": "10023"}'}]
    assert "order 10036" in shopper.hears("10036")
    assert "Shall I cancel it?" in shopper.hears("rosa.esposito@example.com")
    assert "cancelled" in shopper.hears("/affirm")
    assert order(settings, "10036").status.value == "cancelled"
    assert order(settings, "10023").status.value == "shipped"


def test_another_order_number_instead_of_the_email(client: TestClient) -> None:
    shopper = Shopper(client)
    shopper.hears("cancel order 10023")
    assert "order 10035" in shopper.hears("oh sorry I meant 10035")
    assert "Shall I cancel" in shopper.hears("oliver.hughes@example.com")
