"""Handing a conversation to people: when the team is in, and the summary an operator reads first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.state import Event
from bot.types import Conversation, Mode

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FALLBACKS_IN_A_ROW = "fallbacks_in_a_row"  # messages in a row the bot could not answer
UNHAPPY_IN_A_ROW = "unhappy_in_a_row"  # clearly unhappy messages in a row

# Slots the bot keeps for itself: an operator needs the shopper's data, not the dialogue's bookkeeping.
INTERNAL_SLOTS = frozenset({"requested_slot", "awaiting_action", "safety_blocked_replies", "fallbacks_in_a_row",
                            "handoff_requested", "unhappy_in_a_row"})


@dataclass(frozen=True)
class TeamHours:
    """The team's opening hours in its own time zone (from `team` in shop.yml)."""

    zone: ZoneInfo
    hours: Mapping[int, tuple[time, time]]  # weekday (Monday 0) -> opening, closing
    expected_wait_minutes: int = 5

    @classmethod
    def from_facts(cls, team: Mapping[str, Any]) -> TeamHours:
        hours: dict[int, tuple[time, time]] = {}
        for day, span in (team.get("hours") or {}).items():
            if span:
                start, _, end = str(span).partition("-")
                hours[_DAYS.index(str(day).lower()[:3])] = (time.fromisoformat(start), time.fromisoformat(end))
        return cls(ZoneInfo(str(team.get("timezone", "UTC"))), hours, int(team.get("expected_wait_minutes", 5)))

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        span = self.hours.get(local.weekday())
        return span is not None and span[0] <= local.time() < span[1]

    def next_opening(self, now: datetime) -> datetime | None:
        """When the team is next in (local time), or None if it never is."""
        local = now.astimezone(self.zone)
        for days in range(8):
            day = local.date() + timedelta(days=days)
            span = self.hours.get(day.weekday())
            if span is None:
                continue
            opening = datetime.combine(day, span[0], tzinfo=self.zone)
            if opening > local:
                return opening
        return None

    def describe_next_opening(self, now: datetime) -> str:
        """ "today at 08:00 (CET)", "tomorrow at 08:00 (CET)" or "on Monday at 08:00 (CET)". """
        opening = self.next_opening(now)
        if opening is None:
            return "as soon as possible"
        days = (opening.date() - now.astimezone(self.zone).date()).days
        when = "today" if days == 0 else "tomorrow" if days == 1 else f"on {opening.strftime('%A')}"
        return f"{when} at {opening.strftime('%H:%M')} ({opening.tzname()})"


def summarize(conversation: Conversation, events: Sequence[Event], reason: str, at: float) -> dict[str, Any]:
    """What an operator reads before answering: why, what the bot understood, the shopper's data,
    what the safety filter did, and the last messages."""
    intents = [{"intent": t.intent, "confidence": round(t.confidence or 0.0, 3), "text": t.text}
               for t in conversation.history if t.role == "user" and t.intent]
    verdicts = [dict(e.data) for e in events if e.kind == "verdict"]
    return {
        "reason": reason,
        "waiting_since": at,
        "intents": intents[-10:],
        "slots": {k: v for k, v in conversation.slots.items() if k not in INTERNAL_SLOTS},
        "verdicts": verdicts[-10:],
        "last_messages": [{"role": t.role, "text": t.text, "at": t.at} for t in conversation.history[-8:]],
    }


def handoff_reason(changes: Mapping[str, object], events: Sequence[Event]) -> str | None:
    """Why this turn hands the conversation to a person: an action decided so, or the safety filter."""
    requested = changes.get("handoff_requested")
    if requested:
        return str(requested)
    return next((str(e.data.get("reason", "safety")) for e in events if e.kind == "handoff"), None)


@dataclass(frozen=True)
class Watched:
    slots: dict[str, object]
    notice: str | None = None  # the template to send, if any
    reason: str | None = None  # why the conversation goes to a person now, if it does


def watch(conversation: Conversation, failed: bool, unhappy: bool, limits: tuple[int, int]) -> Watched:
    """Count the bot's failures and the shopper's unhappy messages in a row; hand over at `limits`.

    While a person is awaited or answering, nothing is counted: the bot is silent (the handoff
    reply already told the shopper a person will answer, and how soon).
    """
    if conversation.mode in (Mode.PENDING_HUMAN, Mode.HUMAN):
        return Watched({})
    fallbacks = int(conversation.slots.get(FALLBACKS_IN_A_ROW) or 0) + 1 if failed else 0
    upset = int(conversation.slots.get(UNHAPPY_IN_A_ROW) or 0) + 1 if unhappy else 0
    if fallbacks >= limits[0]:
        return Watched({FALLBACKS_IN_A_ROW: None, UNHAPPY_IN_A_ROW: None}, "handoff_fallbacks",
                       f"{fallbacks} messages in a row the bot could not answer")
    if upset >= limits[1]:
        return Watched({FALLBACKS_IN_A_ROW: None, UNHAPPY_IN_A_ROW: None}, "handoff_upset",
                       f"the shopper seems upset ({upset} unhappy messages in a row)")
    return Watched({FALLBACKS_IN_A_ROW: fallbacks or None, UNHAPPY_IN_A_ROW: upset or None})
