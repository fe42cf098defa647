"""Where a message goes: a pure, ordered, first-match-wins function of the conversation and the parse."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from bot.actions.base import (
    AWAITING_ACTION,
    CONFIRMATION,
    EMAIL,
    ITEM_CHANGE,
    ORDER_ID,
    REQUESTED_SLOT,
    SHIPPING_ADDRESS,
)
from bot.actions.registry import CONVERSATION_INTENTS, GENERATOR_INTENTS, SUPPORT_INTENTS, action_for_intent
from bot.types import Conversation, Mode
from nlu.parse import Parse


class RouteKind(enum.StrEnum):
    ACTION = "action"
    CLARIFY = "clarify"
    FALLBACK = "fallback"
    GENERATOR = "generator"  # the grounded generator answers (when the shop has one; else FALLBACK)
    SILENT = "silent"  # a human owns the conversation: the bot stays quiet


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    action: str | None = None
    reason: str = ""
    options: tuple[str, ...] = ()  # intents offered by CLARIFY / FALLBACK


HANDOFF_ACTION = "action_contact_human_agent"


def route_name(decision: Route) -> str:
    """The route as the parse API names it: action, generator, clarify, fallback or handoff."""
    if decision.kind is RouteKind.SILENT or decision.action == HANDOFF_ACTION:
        return "handoff"
    return decision.kind.value


@dataclass(frozen=True)
class RoutingPolicy:
    confidence_threshold: float = 0.5
    ambiguity_margin: float = 0.1
    generator: bool = False  # whether unsure and out-of-scope messages go to the generator


_BARE_ORDER_NUMBER = re.compile(r"\W*(?:order\s*(?:no\.?|number|nr\.?)?\s*)?#?\s*\d{5,6}\W*", re.IGNORECASE)
_ADDRESS_LIKE = re.compile(r"\d.*[^\W\d_]{2,}|[^\W\d_]{2,}.*\d")


def _answers_question(conversation: Conversation, parse: Parse) -> bool:
    """Does this message answer what the bot asked for (order number, email, yes/no...)?"""
    asked = conversation.slots.get(REQUESTED_SLOT)
    if asked == ORDER_ID:
        return parse.entity("order_id") is not None
    if asked == EMAIL:  # or another order number: the action then asks again for that order
        return parse.entity("email") is not None or parse.entity("order_id") is not None
    if asked == CONFIRMATION:
        return parse.intent.name in ("affirm", "deny")
    if asked == ITEM_CHANGE:
        return any(parse.entity(e) for e in ("size", "colour"))
    if asked == SHIPPING_ADDRESS:
        return parse.intent.name == "deny" or bool(_ADDRESS_LIKE.search(parse.text))
    return False


def route(conversation: Conversation, parse: Parse, policy: RoutingPolicy) -> Route:
    """The first rule that matches decides."""
    if conversation.mode in (Mode.PENDING_HUMAN, Mode.HUMAN):
        return Route(RouteKind.SILENT, reason=f"conversation is {conversation.mode.value}")
    awaiting = conversation.slots.get(AWAITING_ACTION)
    if awaiting and _answers_question(conversation, parse):
        return Route(RouteKind.ACTION, str(awaiting), reason=f"answer to {conversation.slots[REQUESTED_SLOT]}")
    if parse.entity("order_id") and _BARE_ORDER_NUMBER.fullmatch(parse.text):
        # a shopper who opens with just "10036" wants to know about that order
        return Route(RouteKind.ACTION, action_for_intent("track_order"), reason="bare order number")
    known = SUPPORT_INTENTS | CONVERSATION_INTENTS | GENERATOR_INTENTS
    top = parse.intent
    options = tuple(s.name for s in parse.ranking if s.name in SUPPORT_INTENTS)[:3]
    unanswered = RouteKind.GENERATOR if policy.generator else RouteKind.FALLBACK
    if parse.out_of_scope or top.name not in known or top.confidence < policy.confidence_threshold:
        reason = "out of scope" if parse.out_of_scope else f"low confidence {top.confidence:.2f}"
        return Route(unanswered, reason=reason, options=options)
    if top.name in GENERATOR_INTENTS:
        return Route(unanswered, reason=f"intent {top.name}", options=options)
    runner_up = parse.ranking[1] if len(parse.ranking) > 1 else None
    if (
        runner_up is not None
        and top.name in SUPPORT_INTENTS
        and runner_up.name in SUPPORT_INTENTS
        and top.confidence - runner_up.confidence < policy.ambiguity_margin
    ):
        return Route(RouteKind.CLARIFY, reason="top intents too close", options=(top.name, runner_up.name))
    return Route(RouteKind.ACTION, action_for_intent(top.name), reason=f"intent {top.name}")
