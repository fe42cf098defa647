"""What every ShopBot action shares: the shop's knowledge, slot names, asking and confirming."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.knowledge import ShopKnowledge

# Slots the actions read and write. `requested_slot` + `awaiting_action` say what the bot asked
# for and which action continues once the shopper answers (the router reads them).
ORDER_ID = "order_id"
EMAIL = "email"
REQUESTED_SLOT = "requested_slot"
AWAITING_ACTION = "awaiting_action"
VERIFIED_ORDERS = "verified_orders"
NEW_ADDRESS = "new_address"
ITEM_CHANGE = "item_change"
CONFIRMATION = "confirmation"
SHIPPING_ADDRESS = "shipping_address"
HANDOFF_REQUESTED = "handoff_requested"  # set by an action that decides a person should take over (its reason)

SLOTS = (ORDER_ID, EMAIL, REQUESTED_SLOT, AWAITING_ACTION, VERIFIED_ORDERS, NEW_ADDRESS, ITEM_CHANGE)

YES_NO = ({"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"})


def action_name(intent: str) -> str:
    return f"action_{intent}"


def ask(slot: str, action: str) -> list[EventType]:
    """Events that make the shopper's next answer come back to `action`."""
    return [SlotSet(REQUESTED_SLOT, slot), SlotSet(AWAITING_ACTION, action)]


def latest_entity(tracker: Tracker, entity: str) -> str | None:
    return next(iter(tracker.get_latest_entity_values(entity)), None)


def latest_intent(tracker: Tracker) -> str:
    return str((tracker.latest_message.get("intent") or {}).get("name", ""))


def answering(tracker: Tracker, slot: str) -> bool:
    """True when this turn is the shopper's answer to our question for `slot`."""
    return tracker.get_slot(REQUESTED_SLOT) == slot


class ShopAction(Action):
    """A rasa-sdk action that answers from the shop's knowledge files."""

    def __init__(self, knowledge: ShopKnowledge) -> None:
        self.knowledge = knowledge

    def say(
        self,
        dispatcher: CollectingDispatcher,
        key: str,
        buttons: Iterable[dict[str, str]] = (),
        **values: Any,
    ) -> None:
        dispatcher.utter_message(text=self.knowledge.answer(key, **values), buttons=list(buttons))


class FaqAnswer(ShopAction):
    """Answers one support intent with its text from data/faq.yml."""

    def __init__(self, intent: str, knowledge: ShopKnowledge, answer: str | None = None) -> None:
        super().__init__(knowledge)
        self.intent = intent
        self.answer_key = answer or intent
        knowledge.answer(self.answer_key)  # fail at start-up, not in front of a shopper

    def name(self) -> str:
        return action_name(self.intent)

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        self.say(dispatcher, self.answer_key)
        return []
