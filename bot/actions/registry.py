"""The one explicit list of ShopBot's actions and the intent each answers. No class scanning."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from bot.actions.base import FaqAnswer, ShopAction, action_name
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
    """Tells the shopper how to reach the team (the console issue turns this into a live handoff)."""

    def name(self) -> str:
        return action_name("contact_human_agent")

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        self.say(dispatcher, "human_contact")
        return []


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
