"""The router is a pure, ordered table: each row is one decision."""

from __future__ import annotations

import pytest

from bot.router import Route, RouteKind, RoutingPolicy, route
from bot.types import Conversation, Mode
from nlu.parse import Entity, IntentScore, Parse

POLICY = RoutingPolicy(confidence_threshold=0.5, ambiguity_margin=0.1)


def parse(text: str, *ranking: tuple[str, float], entities: dict[str, str] | None = None) -> Parse:
    scores = tuple(IntentScore(n, c) for n, c in ranking)
    found = tuple(Entity(k, v, 0, len(v)) for k, v in (entities or {}).items())
    return Parse(text=text, intent=scores[0], ranking=scores, entities=found)


ASKED_ORDER = {"requested_slot": "order_id", "awaiting_action": "action_track_order"}
ASKED_YES_NO = {"requested_slot": "confirmation", "awaiting_action": "action_cancel_order"}
ASKED_ADDRESS = {"requested_slot": "shipping_address", "awaiting_action": "action_change_shipping_address"}


@pytest.mark.parametrize(
    ("mode", "slots", "message", "expected"),
    [
        (Mode.HUMAN, {}, parse("where is 10023", ("track_order", 0.99)), Route(RouteKind.SILENT)),
        (Mode.PENDING_HUMAN, ASKED_ORDER, parse("10023", ("track_order", 0.9)), Route(RouteKind.SILENT)),
        (Mode.BOT, {}, parse("where is 10023", ("track_order", 0.95), ("track_refund", 0.02)),
         Route(RouteKind.ACTION, "action_track_order")),
        (Mode.BOT, ASKED_ORDER, parse("10023", ("greet", 0.3), entities={"order_id": "10023"}),
         Route(RouteKind.ACTION, "action_track_order")),
        (Mode.BOT, ASKED_ORDER, parse("can I pay by card", ("check_payment_methods", 0.9), ("greet", 0.05)),
         Route(RouteKind.ACTION, "action_check_payment_methods")),
        (Mode.BOT, ASKED_YES_NO, parse("yes", ("affirm", 0.97)), Route(RouteKind.ACTION, "action_cancel_order")),
        (Mode.BOT, ASKED_YES_NO, parse("nope", ("deny", 0.9)), Route(RouteKind.ACTION, "action_cancel_order")),
        (Mode.BOT, {}, parse("yes", ("affirm", 0.97)), Route(RouteKind.ACTION, "action_acknowledge")),
        (Mode.BOT, ASKED_ADDRESS, parse("Hauptstr. 5, 10115 Berlin", ("check_invoice", 0.4)),
         Route(RouteKind.ACTION, "action_change_shipping_address")),
        (Mode.BOT, {}, parse("blorp", ("review", 0.31), ("complaint", 0.2)),
         Route(RouteKind.FALLBACK, options=("review", "complaint"))),
        (Mode.BOT, {}, parse("invoice", ("get_invoice", 0.52), ("check_invoice", 0.46)),
         Route(RouteKind.CLARIFY, options=("get_invoice", "check_invoice"))),
        (Mode.BOT, {}, parse("hi", ("greet", 0.55), ("goodbye", 0.5)), Route(RouteKind.ACTION, "action_greet")),
        (Mode.BOT, {}, parse("x", ("not_an_intent", 0.99)), Route(RouteKind.FALLBACK)),
        (Mode.BOT, {}, parse("#10036", ("greet", 0.3), entities={"order_id": "10036"}),
         Route(RouteKind.ACTION, "action_track_order")),
        (Mode.BOT, {}, parse("order no. 10036?", ("cancel_order", 0.6), entities={"order_id": "10036"}),
         Route(RouteKind.ACTION, "action_track_order")),
        (Mode.BOT, {}, parse("cancel 10036", ("cancel_order", 0.9), entities={"order_id": "10036"}),
         Route(RouteKind.ACTION, "action_cancel_order")),
    ],
)
def test_route_table(mode: Mode, slots: dict, message: Parse, expected: Route) -> None:
    decided = route(Conversation("c", mode=mode, slots=slots), message, POLICY)
    assert (decided.kind, decided.action) == (expected.kind, expected.action)
    if expected.options:
        assert decided.options == expected.options


def test_a_bare_order_number_is_looked_up_even_when_out_of_scope() -> None:
    message = Parse("10036", IntentScore("track_order", 0.55), entities=(Entity("order_id", "10036", 0, 5),),
                    out_of_scope=True)
    assert route(Conversation("c"), message, POLICY).action == "action_track_order"


def test_out_of_scope_never_reaches_an_action() -> None:
    message = Parse("what's the weather", IntentScore("track_order", 0.99), out_of_scope=True)
    assert route(Conversation("c"), message, POLICY).kind is RouteKind.FALLBACK


@pytest.mark.parametrize(("generator", "kind"), [(True, RouteKind.GENERATOR), (False, RouteKind.FALLBACK)])
def test_product_questions_go_to_the_generator_when_the_shop_has_one(generator: bool, kind: RouteKind) -> None:
    message = parse("is the Harbor Rain Jacket waterproof", ("product_question", 0.9), ("place_order", 0.05))
    decided = route(Conversation("c"), message, RoutingPolicy(generator=generator))
    assert decided.kind is kind and decided.action is None
