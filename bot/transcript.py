"""What is kept of a message: transcript lines and events, personal data redacted."""

from __future__ import annotations

import time

from bot.router import Route
from bot.state import Event
from bot.types import InboundMessage, Reply, Turn
from generation.safety import Verdict
from generation.safety.pii import redact
from nlu.parse import Parse


def record(message: InboundMessage, text: str, guard: Verdict, parse: Parse, decision: Route,
            replies: list[Reply], events: list[Event]) -> tuple[list[Turn], list[Event]]:
    """The transcript lines and the events of one message, as stored: personal data redacted, and a
    button press under its title."""
    now = time.time()
    shown = message.display.strip() if message.display.strip() and text.startswith("/") else text
    stored = redact(shown)  # personal data never reaches the store or the logs
    turns = [Turn("user", stored, now, parse.intent.name, parse.intent.confidence, decision.kind.value,
                  id=message.message_id or None)]
    turns += [Turn("bot", r.text, now, route=decision.kind.value, id=r.id) for r in replies]
    logged = [
        Event("user", now, {"text": stored, "channel": message.channel,
                            **({"metadata": dict(message.metadata)} if message.metadata else {})}),
        *([verdict_event("input", guard)] if guard.flagged else []),
        Event("parse", now, stored_parse(parse, stored if shown is text else redact(text))),
        Event("route", now, {"kind": decision.kind.value, "action": decision.action, "reason": decision.reason}),
        *events,
        *(Event("reply", now, r.to_json()) for r in replies),
    ]
    return turns, logged


def verdict_event(direction: str, verdict: Verdict) -> Event:
    return Event("verdict", time.time(), {"direction": direction, "action": verdict.action.value,
                                          "categories": dict(verdict.categories), "reasons": list(verdict.reasons)})


def stored_parse(parse: Parse, redacted_text: str) -> dict[str, object]:
    """The parse as stored: the redacted text, and no email or phone number among the entities."""
    stored = parse.to_json()
    stored["text"] = redacted_text
    stored["entities"] = [{**e, "value": "[redacted]"} if e.get("entity") in ("email", "phone") else e
                          for e in stored["entities"]]
    return stored
