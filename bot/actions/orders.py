"""Actions about one order: find it (asking for the number when needed), check the owner, answer."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.base import (
    AWAITING_ACTION,
    CONFIRMATION,
    EMAIL,
    ORDER_ID,
    VERIFIED_ORDERS,
    YES_NO,
    ShopAction,
    action_name,
    ask,
    latest_entity,
)
from bot.actions.knowledge import ShopKnowledge
from bot.actions.orders_store import Order, OrderLookup


class OrderAction(ShopAction):
    """Base for order actions. Subclasses set `intent` and implement `handle`."""

    intent: ClassVar[str]
    #: faq.yml answer given when the shopper names no order; None: ask for the order number instead
    general_answer: ClassVar[str | None] = None
    #: changing an order needs proof of ownership: the order's email address
    needs_owner: ClassVar[bool] = False

    def __init__(self, knowledge: ShopKnowledge, orders: OrderLookup) -> None:
        super().__init__(knowledge)
        self.orders = orders

    def name(self) -> str:
        return action_name(self.intent)

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        order_id = latest_entity(tracker, ORDER_ID) or self._remembered_order(tracker)
        if order_id is None:
            if self.general_answer:
                self.say(dispatcher, self.general_answer)
                return []
            remembered = tracker.get_slot(ORDER_ID)
            buttons = [{"title": f"Order {remembered}", "payload": f'/{self.intent}{{"order_id": "{remembered}"}}'}]
            self.say(dispatcher, "ask_order_id", buttons=buttons if remembered else ())
            return ask(ORDER_ID, self.name())
        order = await self.orders.get(str(order_id))
        if order is None:
            self.say(dispatcher, "order_not_found", order_id=order_id)
            return [SlotSet(ORDER_ID, None), *ask(ORDER_ID, self.name())]
        events: list[EventType] = [SlotSet(ORDER_ID, order.id)]
        if self.needs_owner and order.id not in (tracker.get_slot(VERIFIED_ORDERS) or []):
            verified = self._verify_owner(dispatcher, tracker, order)
            if verified is None:
                return events + ([] if latest_entity(tracker, EMAIL) else ask(EMAIL, self.name()))
            events.append(verified)
        return events + await self.handle(dispatcher, tracker, order)

    def _remembered_order(self, tracker: Tracker) -> str | None:
        """The order talked about earlier. A change must name its order, unless it continues our own dialogue."""
        if self.needs_owner and tracker.get_slot(AWAITING_ACTION) != self.name():
            return None
        return tracker.get_slot(ORDER_ID)

    def _verify_owner(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order
    ) -> EventType | None:
        """The event recording a verified owner, or None after asking (or refusing) politely."""
        email = latest_entity(tracker, EMAIL)
        if email is None:
            self.say(dispatcher, "ask_email_for_order", order_id=order.id)
            return None
        if email.strip().lower() != order.customer_email.lower():
            self.say(dispatcher, "email_mismatch", order_id=order.id)
            return None
        return SlotSet(VERIFIED_ORDERS, [*(tracker.get_slot(VERIFIED_ORDERS) or []), order.id])

    #: responses.yml template that answers about one order (subclasses may override `handle`)
    order_answer: ClassVar[str] = ""

    async def handle(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order
    ) -> list[EventType]:
        self.say_order(dispatcher, self.order_answer, order)
        return []

    def say_order(self, dispatcher: CollectingDispatcher, key: str, order: Order, **values: Any) -> None:
        self.say(dispatcher, key, order=order.template_values(), **values)


class TrackOrder(OrderAction):
    intent = "track_order"

    async def handle(self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order) -> list[EventType]:
        self.say_order(dispatcher, f"status_{order.status.value}", order)
        return []


class TrackRefund(OrderAction):
    intent = "track_refund"
    order_answer = "refund_for_order"


class CheckCancellationFee(OrderAction):
    intent = "check_cancellation_fee"
    general_answer = "check_cancellation_fee"
    order_answer = "fee_for_order"


class CheckInvoice(OrderAction):
    intent = "check_invoice"
    general_answer = "check_invoice"
    order_answer = "invoice_for_order"


class GetInvoice(CheckInvoice):
    intent = "get_invoice"
    general_answer = "get_invoice"


class PaymentIssue(OrderAction):
    intent = "payment_issue"
    general_answer = "payment_issue"
    order_answer = "payment_for_order"


class GetRefund(OrderAction):
    """Delivered: how to return it and how many days are left. Not shipped: offer to cancel."""

    intent = "get_refund"
    general_answer = "get_refund"

    async def handle(self, dispatcher: CollectingDispatcher, tracker: Tracker, order: Order) -> list[EventType]:
        window = int(self.knowledge.facts["policies"]["return_window_days"])
        days_left = window - (date.today() - order.delivered_on).days if order.delivered_on else window
        offer_cancel = order.status.value in self.knowledge.facts["cancellation"]["free_statuses"]
        self.say_order(dispatcher, "return_for_order", order, days_left=days_left,
                       buttons=YES_NO if offer_cancel else ())
        return ask(CONFIRMATION, action_name("cancel_order")) if offer_cancel else []
