"""Handing a conversation to people: when the team is in, and the summary an operator reads first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.state import Event
from bot.types import Conversation

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Slots the bot keeps for itself: an operator needs the shopper's data, not the dialogue's bookkeeping.
INTERNAL_SLOTS = frozenset({"requested_slot", "awaiting_action", "safety_blocked_replies", "fallbacks_in_a_row",
                            "handoff_requested", "queue_notice_sent", "unhappy_in_a_row"})


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
