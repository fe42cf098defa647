"""Actions that change an order: each asks for confirmation, then really changes the order store."""

from __future__ import annotations

import json
import re
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.base import (
    CONFIRMATION,
    ITEM_CHANGE,
    NEW_ADDRESS,
    SHIPPING_ADDRESS,
    YES_NO,
    answering,
    ask,
    latest_entity,
    latest_intent,
)
from bot.actions.orders import OrderAction
from bot.actions.orders_store import Order, OrderError, OrderItem

# "my new address is ..." / "it's ..." before the address itself
_ADDRESS_LEAD = re.compile(
    r"^\s*(?:(?:my\s+)?(?:new\s+)?address\s+is|it'?s|it\s+is|please\s+use|send\s+it\s+to)\s*:?\s*",
    re.IGNORECASE,
)


def looks_like_address(text: str) -> bool:
    """A street with a number and at least a place: 'Lindenstraße 4, 10969 Berlin'."""
    return bool(re.search(r"\d", text)) and len(re.findall(r"[^\W\d_]{2,}", text)) >= 2 and len(text) >= 10


def clean_address(text: str) -> str:
    return " ".join(_ADDRESS_LEAD.sub("", text).split()).strip(" .")


class ChangingAction(OrderAction):
    """An order change: refused outside the changeable statuses, confirmed with Yes/No."""

    needs_owner = True
    verb = "changed"

    def changeable(self, order: Order) -> bool:
        return order.status.value in self.knowledge.facts["cancellation"]["change_statuses"]

    def confirmed(self, tracker: Tracker) -> bool | None:
        """True/False when this turn answers our Yes/No question, None otherwise."""
        if not answering(tracker, CONFIRMATION):
            return None
        return {"affirm": True, "deny": False}.get(latest_intent(tracker))

    def refuse(self, dispatcher: CollectingDispatcher, order: Order) -> list[EventType]:
        self.say_order(dispatcher, "cannot_change", order, verb=self.verb)
        return []


class CancelOrder(ChangingAction):
    intent = "cancel_order"
    verb = "cancelled"

    def changeable(self, order: Order) -> bool:
        return order.status.value in self.knowledge.facts["cancellation"]["free_statuses"]

    async def handle(self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order) -> list[EventType]:
        if not self.changeable(order):
            return self.refuse(dispatcher, order)
        confirmed = self.confirmed(tracker)
        if confirmed is None:
            self.say_order(dispatcher, "confirm_cancel", order, buttons=YES_NO)
            return ask(CONFIRMATION, self.name())
        if not confirmed:
            self.say(dispatcher, "kept", order_id=order.id)
            return []
        try:
            cancelled = await self.orders.cancel(order.id)
        except OrderError as exc:
            self.say(dispatcher, "change_refused", order_id=order.id, reason=str(exc))
            return []
        self.say_order(dispatcher, "cancelled", cancelled)
        return []


class ChangeShippingAddress(ChangingAction):
    intent = "change_shipping_address"

    async def handle(self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order) -> list[EventType]:
        if not self.changeable(order):
            return self.refuse(dispatcher, order)
        new_address = tracker.get_slot(NEW_ADDRESS)
        confirmed = self.confirmed(tracker)
        if confirmed is not None and new_address:
            return await self._finish(dispatcher, order, new_address if confirmed else None)
        if not answering(tracker, SHIPPING_ADDRESS):
            self.say_order(dispatcher, "ask_new_address", order)
            return ask(SHIPPING_ADDRESS, self.name())
        if latest_intent(tracker) == "deny":
            self.say(dispatcher, "kept", order_id=order.id)
            return []
        address = clean_address(tracker.latest_message.get("text", ""))
        if not looks_like_address(address):
            self.say(dispatcher, "address_unclear")
            return ask(SHIPPING_ADDRESS, self.name())
        self.say_order(dispatcher, "confirm_address", order, new_address=address, buttons=YES_NO)
        return [SlotSet(NEW_ADDRESS, address), *ask(CONFIRMATION, self.name())]

    async def _finish(self, dispatcher: CollectingDispatcher, order: Order, address: str | None) -> list[EventType]:
        if address is None:
            self.say(dispatcher, "kept", order_id=order.id)
            return [SlotSet(NEW_ADDRESS, None)]
        try:
            changed = await self.orders.change_address(order.id, address)
        except OrderError as exc:
            self.say(dispatcher, "change_refused", order_id=order.id, reason=str(exc))
        else:
            self.say_order(dispatcher, "address_changed", changed)
        return [SlotSet(NEW_ADDRESS, None)]


class ChangeOrder(ChangingAction):
    """Changes the size or colour of an item (adding/removing items means a new order)."""

    intent = "change_order"

    async def handle(self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order) -> list[EventType]:
        if not self.changeable(order):
            return self.refuse(dispatcher, order)
        pending = tracker.get_slot(ITEM_CHANGE)
        confirmed = self.confirmed(tracker)
        if confirmed is not None and pending:
            return await self._finish(dispatcher, order, pending if confirmed else None)
        size, colour = latest_entity(tracker, "size"), latest_entity(tracker, "colour")
        if not size and not colour:
            self.say_order(dispatcher, "ask_item_change", order)
            return ask(ITEM_CHANGE, self.name())
        item = self._pick_item(order, latest_entity(tracker, "product"))
        if item is None:
            buttons = [{"title": i.name, "payload": _change_payload(i, size, colour)} for i in order.items]
            self.say(dispatcher, "ask_which_item", buttons=buttons)
            return ask(ITEM_CHANGE, self.name())
        change = {"sku": item.sku, "size": size, "colour": colour}
        self.say_order(dispatcher, "confirm_item_change", order, item=item.__dict__, size=size, colour=colour,
                       buttons=YES_NO)
        return [SlotSet(ITEM_CHANGE, change), *ask(CONFIRMATION, self.name())]

    @staticmethod
    def _pick_item(order: Order, product: str | None) -> OrderItem | None:
        if len(order.items) == 1:
            return order.items[0]
        return next((i for i in order.items if product and i.name.lower() == product.lower()), None)

    async def _finish(self, dispatcher: CollectingDispatcher, order: Order,
                      change: dict[str, Any] | None) -> list[EventType]:
        if change is None:
            self.say(dispatcher, "kept", order_id=order.id)
            return [SlotSet(ITEM_CHANGE, None)]
        try:
            changed = await self.orders.change_item(order.id, change["sku"], size=change["size"],
                                                    colour=change["colour"])
        except OrderError as exc:
            self.say(dispatcher, "change_refused", order_id=order.id, reason=str(exc))
            return [SlotSet(ITEM_CHANGE, None)]
        item = next(i for i in changed.items if i.sku == change["sku"])
        self.say_order(dispatcher, "item_changed", changed, item=item.__dict__)
        return [SlotSet(ITEM_CHANGE, None)]


def _change_payload(item: OrderItem, size: str | None, colour: str | None) -> str:
    """A button payload that carries the whole change, so pressing it needs no second question."""
    entities = {"product": item.name, **({"size": size} if size else {}), **({"colour": colour} if colour else {})}
    return "/change_order" + json.dumps(entities, ensure_ascii=False)
