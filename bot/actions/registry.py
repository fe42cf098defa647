"""The one explicit list of ShopBot's actions and the intent each answers. No class scanning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from bot.actions.base import HANDOFF_REQUESTED, FaqAnswer, ShopAction, action_name
from bot.actions.knowledge import ShopKnowledge
from bot.actions.order_changes import CancelOrder, ChangeOrder, ChangeShippingAddress
from bot.actions.orders import (
    CheckCancellationFee,
    CheckInvoice,
    GetInvoice,
    GetRefund,
    PaymentIssue,
    TrackOrder,
    TrackRefund,
)
from bot.actions.orders_store import OrderLookup
from bot.handoff import TeamHours

#: support intents answered from data/faq.yml alone
FAQ_INTENTS = (
    "check_payment_methods", "check_refund_policy", "complaint", "contact_customer_service",
    "create_account", "delete_account", "delivery_options", "delivery_period", "edit_account",
    "newsletter_subscription", "place_order", "recover_password", "registration_problems", "review",
    "set_up_shipping_address", "switch_account",
)
ORDER_ACTIONS = (
    TrackOrder, TrackRefund, CheckCancellationFee, CheckInvoice, GetInvoice, PaymentIssue, GetRefund,
    CancelOrder, ChangeOrder, ChangeShippingAddress,
)
#: small talk with a fixed answer in faq.yml
CHAT_INTENTS = ("greet", "goodbye", "thank_you", "bot_challenge")

SUPPORT_INTENTS = frozenset(
    {*FAQ_INTENTS, *(a.intent for a in ORDER_ACTIONS), "contact_human_agent"}
)
CONVERSATION_INTENTS = frozenset({*CHAT_INTENTS, "affirm", "deny"})
#: questions about the catalogue: the grounded generator answers them from the product passages
GENERATOR_INTENTS = frozenset({"product_question"})


class ContactHumanAgent(ShopAction):
    """Hands the conversation to the team: queued for an operator, with the wait or the next opening."""

    def __init__(self, knowledge: ShopKnowledge, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(knowledge)
        self.team = TeamHours.from_facts(knowledge.facts.get("team", {}))
        self.clock = clock

    def name(self) -> str:
        return action_name("contact_human_agent")

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        now = self.clock()
        if self.team.is_open(now):
            self.say(dispatcher, "handoff_queued", expected_wait_minutes=self.team.expected_wait_minutes)
        else:
            self.say(dispatcher, "handoff_after_hours", next_opening=self.team.describe_next_opening(now))
        return [SlotSet(HANDOFF_REQUESTED, "the shopper asked for a person")]


class Acknowledge(ShopAction):
    """A yes or no that answers no question of ours."""

    def name(self) -> str:
        return "action_acknowledge"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        self.say(dispatcher, "nothing_pending")
        return []


def build_actions(knowledge: ShopKnowledge, orders: OrderLookup) -> list[Action]:
    """Every action, wired to its knowledge and order system."""
    actions: list[Action] = [FaqAnswer(intent, knowledge) for intent in (*FAQ_INTENTS, *CHAT_INTENTS)]
    actions += [cls(knowledge, orders) for cls in ORDER_ACTIONS]
    actions += [ContactHumanAgent(knowledge), Acknowledge(knowledge)]
    return actions


def action_for_intent(intent: str) -> str:
    """The action that answers `intent` when nothing is pending."""
    if intent in ("affirm", "deny"):
        return "action_acknowledge"
    return action_name(intent)


def build_executor(knowledge: ShopKnowledge, orders: OrderLookup) -> ActionExecutor:
    """A rasa-sdk executor holding every action: used in-process and by `shopbot actions`."""
    executor = ActionExecutor()
    for action in build_actions(knowledge, orders):
        executor.register_action(action)
    return executor
