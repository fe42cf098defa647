"""The conversation store contract: what the engine needs from wherever state lives."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.types import Conversation


@dataclass(frozen=True)
class Event:
    """Something that happened in a conversation, kept for operators and metrics."""

    kind: str  # "user", "parse", "action", "reply", "slot", "handoff", "error", ...
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "data": dict(self.data)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(kind=data["kind"], at=float(data["at"]), data=dict(data.get("data", {})))


class StoreUnavailable(Exception):
    """The store cannot be reached; carries the conversation id. Channels answer 503 / retry later."""

    def __init__(self, conversation_id: str, reason: str) -> None:
        super().__init__(f"conversation store unavailable for {conversation_id!r}: {reason}")
        self.conversation_id = conversation_id


class ConversationBusy(Exception):
    """Another worker holds the conversation's lock for longer than we may wait."""

    def __init__(self, conversation_id: str, waited_ms: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is busy (lock not free within {waited_ms} ms)"
        )
        self.conversation_id = conversation_id
        self.waited_ms = waited_ms


class ConversationStore(Protocol):
    """Where conversations and their event logs live between messages."""

    async def load(self, conversation_id: str) -> Conversation | None:
        """The stored conversation, or None if unknown or expired."""
        ...

    async def save(self, conversation: Conversation, events: Sequence[Event] = ()) -> None:
        """Write the conversation and append `events` atomically; refreshes the TTL of both."""
        ...

    async def events(self, conversation_id: str, limit: int = 100) -> list[Event]:
        """The newest `limit` events, oldest first."""
        ...

    async def delete(self, conversation_id: str) -> None:
        """Forget the conversation and its events (its lock, if held, stays with its holder)."""
        ...

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the conversation exclusively; raises ConversationBusy after lock_wait_ms."""
        ...

    async def ping(self) -> bool:
        """True when the backend answers; never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


# Both stores encode through these, so a value that is not JSON fails the same way in each
# (TypeError/ValueError before anything is written).
def encode_conversation(conversation: Conversation) -> str:
    return _dumps(conversation.to_json())


def decode_conversation(raw: str | bytes) -> Conversation:
    return Conversation.from_json(json.loads(raw))


def encode_event(event: Event) -> str:
    return _dumps(event.to_json())


def decode_event(raw: str | bytes) -> Event:
    return Event.from_json(json.loads(raw))


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON and other readers (console JS) would choke.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
