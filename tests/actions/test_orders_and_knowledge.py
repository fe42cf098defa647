"""The demo order store and every answer template, rendered for every demo order."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from bot.actions.demo_orders import SqliteOrderStore, create_demo_store, delivery_price
from bot.actions.knowledge import KnowledgeError, ShopKnowledge
from bot.actions.orders_store import OrderError, OrderStatus
from tests.conftest import ROOT

DATA = ROOT / "data"
KNOWLEDGE = ShopKnowledge.load(DATA / "shop.yml", DATA / "faq.yml", DATA / "responses.yml")
CATALOG = yaml.safe_load((DATA / "catalog.yml").read_text())["products"]
ORDER_TEMPLATES = [k for k in KNOWLEDGE.templates if "order" in KNOWLEDGE.variables(k)]


@pytest.fixture
def store(tmp_path: Path) -> SqliteOrderStore:
    create_demo_store(tmp_path / "o.sqlite", DATA / "demo_orders.yml", KNOWLEDGE.facts["delivery_options"],
                      date.today())
    return SqliteOrderStore(tmp_path / "o.sqlite", CATALOG)


def all_orders(store: SqliteOrderStore) -> list:  # type: ignore[type-arg]
    ids = [str(o["id"]) for o in yaml.safe_load((DATA / "demo_orders.yml").read_text())["orders"]]
    return [asyncio.run(store.get(i)) for i in ids]


def test_demo_store_has_every_status_and_order_10023(store: SqliteOrderStore) -> None:
    orders = all_orders(store)
    assert len(orders) >= 30 and {o.status for o in orders} == set(OrderStatus)
    shipped = asyncio.run(store.get("10023"))
    assert shipped is not None and shipped.status is OrderStatus.SHIPPED
    assert shipped.carrier == "DHL" and shipped.eta == date.today() + timedelta(days=1)
    assert shipped.total == 129.00  # free standard delivery from €60


def test_delivery_price_honours_the_free_threshold() -> None:
    option = {"price": 4.95, "free_from": 60}
    assert delivery_price(option, 59.99) == 4.95 and delivery_price(option, 60) == 0.0
    assert delivery_price({"price": 14.95, "free_from": None}, 1000) == 14.95


def test_every_order_template_renders_for_every_demo_order(store: SqliteOrderStore) -> None:
    extra = {"days_left": 3, "new_address": "Lindenstraße 4, 10969 Berlin", "verb": "changed",
             "item": {"name": "Harbor Rain Jacket", "size": "M", "colour": "navy"}, "size": "L",
             "colour": None, "order_id": "10023", "reason": "x"}
    for order in all_orders(store):
        for key in ORDER_TEMPLATES:
            if key.startswith("status_") and key != f"status_{order.status.value}":
                continue  # each status sentence is only used for its own status
            text = KNOWLEDGE.answer(key, order=order.template_values(), **extra)
            assert order.id in text, key
            assert "None" not in text, (key, order.id, text)


def test_changes_are_refused_once_shipped(store: SqliteOrderStore) -> None:
    with pytest.raises(OrderError) as error:
        asyncio.run(store.cancel("10023"))
    assert error.value.order_id == "10023" and "shipped" in str(error.value)
    with pytest.raises(OrderError):
        asyncio.run(store.change_address("10023", "Elsewhere 1, 10115 Berlin"))


def test_cancelling_a_paid_order_records_the_refund(store: SqliteOrderStore) -> None:
    cancelled = asyncio.run(store.cancel("10029"))
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.refund is not None and cancelled.refund.amount == cancelled.total


def test_item_change_checks_the_catalogue(store: SqliteOrderStore) -> None:
    with pytest.raises(OrderError, match="not available in size XXXL"):
        asyncio.run(store.change_item("10029", "JL-1005", size="XXXL"))
    changed = asyncio.run(store.change_item("10029", "JL-1005", size="L"))
    assert changed.items[0].size == "L"


def test_one_place_to_change_a_policy(tmp_path: Path) -> None:
    shop = yaml.safe_load((DATA / "shop.yml").read_text())
    shop["policies"]["return_window_days"] = 45
    (tmp_path / "shop.yml").write_text(yaml.safe_dump(shop))
    knowledge = ShopKnowledge.load(tmp_path / "shop.yml", DATA / "faq.yml", DATA / "responses.yml")
    assert "45 days" in knowledge.answer("check_refund_policy")
    assert "30 days" not in knowledge.answer("check_refund_policy")


def test_a_template_typo_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "faq.yml").write_text("answers:\n  greet: 'Hi from {{ shop.nmae }}'\n")
    with pytest.raises(KnowledgeError, match="greet"):
        ShopKnowledge.load(DATA / "shop.yml", tmp_path / "faq.yml")
