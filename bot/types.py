"""The values that cross module boundaries: messages in, replies out, a conversation's state."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class InboundMessage:
    """One message from a shopper, already parsed out of its transport."""

    channel: str
    conversation_id: str
    text: str
    user_id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    display: str = ""  # what the transcript shows when `text` is a button payload: the button's title
    message_id: str = ""  # the channel's id for this message (kept in the transcript: a client sees it arrived)


@dataclass(frozen=True)
class Button:
    """A quick reply: `title` is shown, `payload` is sent back when it is pressed."""

    title: str
    payload: str


class ReplyKind(enum.StrEnum):
    ACTION = "action"
    CLARIFY = "clarify"
    FALLBACK = "fallback"
    GENERATOR = "generator"
    HANDOFF = "handoff"
    NOTICE = "notice"


@dataclass(frozen=True)
class Reply:
    """One message from the bot to the shopper."""

    text: str
    buttons: tuple[Button, ...] = ()
    kind: ReplyKind = ReplyKind.ACTION
    id: str = ""  # set by the engine when it sends the reply; feedback and drafts refer to it

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "buttons": [{"title": b.title, "payload": b.payload} for b in self.buttons],
            "kind": self.kind.value,
            **({"id": self.id} if self.id else {}),
        }


class Mode(enum.StrEnum):
    """Who answers the shopper."""

    BOT = "bot"
    PENDING_HUMAN = "pending_human"
    HUMAN = "human"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Turn:
    """One line of the transcript, as stored (shopper text is already sanitised)."""

    role: str  # "user" | "bot" | "operator"
    text: str
    at: float
    intent: str | None = None
    confidence: float | None = None
    route: str | None = None
    id: str | None = None  # a bot or operator turn: the id of the reply the shopper saw

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Turn:
        return cls(**data)


@dataclass(frozen=True)
class Conversation:
    """Everything the bot remembers about one conversation."""

    id: str
    channel: str = ""
    mode: Mode = Mode.BOT
    slots: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Turn, ...] = ()
    operator: str | None = None
    updated_at: float = 0.0

    def with_turns(self, turns: list[Turn], limit: int) -> Conversation:
        """A copy with `turns` appended, keeping only the newest `limit` turns."""
        return replace(self, history=(self.history + tuple(turns))[-limit:], updated_at=time.time())

    def with_slots(self, changes: Mapping[str, Any]) -> Conversation:
        """A copy with slots set (a value of None removes the slot)."""
        slots = {**self.slots, **changes}
        return replace(self, slots={k: v for k, v in slots.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "mode": self.mode.value,
            "slots": dict(self.slots),
            "history": [t.to_json() for t in self.history],
            "operator": self.operator,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Conversation:
        return cls(
            id=data["id"],
            channel=data.get("channel", ""),
            mode=Mode(data.get("mode", "bot")),
            slots=dict(data.get("slots", {})),
            history=tuple(Turn.from_json(t) for t in data.get("history", [])),
            operator=data.get("operator"),
            updated_at=float(data.get("updated_at", 0.0)),
        )
