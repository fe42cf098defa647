"""In-process conversation store: the demo default and the test double."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.state.locks import KeyedLocks
from bot.state.store import (
    ConversationBusy,
    Event,
    decode_conversation,
    decode_event,
    encode_conversation,
    encode_event,
)
from bot.types import Conversation


@dataclass
class _Entry:
    """What Redis would hold for one conversation: JSON text and expiry per key."""

    conversation: str | None = None
    conversation_expires: float = 0.0
    events: list[str] = field(default_factory=list)
    events_expires: float = 0.0


class MemoryStore:
    """A `ConversationStore` in this process's memory, behaving like `RedisStore`.

    Values go through the same JSON encoding as Redis; expiry is checked on read against
    `clock` (monotonic seconds, injectable for tests). Not shared between processes.
    """

    def __init__(
        self,
        ttl_s: float,
        events_limit: int = 500,
        lock_wait_ms: int = 5000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or events_limit <= 0 or lock_wait_ms < 0:
            raise ValueError("ttl_s and events_limit must be positive, lock_wait_ms not negative")
        self._ttl_s = ttl_s
        self._events_limit = events_limit
        self._lock_wait_ms = lock_wait_ms
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks = KeyedLocks()
        self._next_sweep = clock() + ttl_s

    async def load(self, conversation_id: str) -> Conversation | None:
        """The stored conversation, or None if unknown or expired."""
        entry = self._live_entry(conversation_id)
        if entry is None or entry.conversation is None:
            return None
        return decode_conversation(entry.conversation)

    async def save(self, conversation: Conversation, events: Sequence[Event] = ()) -> None:
        """Write the conversation and append `events`; refreshes the TTL of both."""
        # Encode everything first so that a bad value leaves the store untouched.
        encoded = encode_conversation(conversation)
        new_events = [encode_event(e) for e in events]
        now = self._clock()
        self._sweep(now)
        entry = self._live_entry(conversation.id) or _Entry()
        entry.conversation = encoded
        entry.conversation_expires = now + self._ttl_s
        entry.events = (entry.events + new_events)[-self._events_limit :]
        entry.events_expires = now + self._ttl_s
        self._entries[conversation.id] = entry

    async def events(self, conversation_id: str, limit: int = 100) -> list[Event]:
        """The newest `limit` events, oldest first."""
        entry = self._live_entry(conversation_id)
        if entry is None or limit <= 0:
            return []
        return [decode_event(raw) for raw in entry.events[-limit:]]

    async def delete(self, conversation_id: str) -> None:
        """Forget the conversation and its events."""
        self._entries.pop(conversation_id, None)

    @asynccontextmanager
    async def lock(self, conversation_id: str) -> AsyncIterator[None]:
        """Hold the conversation exclusively; raises ConversationBusy after lock_wait_ms."""
        if not await self._locks.acquire(conversation_id, self._lock_wait_ms / 1000):
            raise ConversationBusy(conversation_id, self._lock_wait_ms)
        try:
            yield
        finally:
            self._locks.release(conversation_id)

    async def ping(self) -> bool:
        """Always True: memory is always there."""
        return True

    async def aclose(self) -> None:
        """Drop everything held."""
        self._entries.clear()

    def _live_entry(self, conversation_id: str) -> _Entry | None:
        """The entry with expired parts dropped, as Redis would have expired those keys."""
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        now = self._clock()
        if entry.conversation is not None and entry.conversation_expires <= now:
            entry.conversation = None
        if entry.events and entry.events_expires <= now:
            entry.events = []
        if entry.conversation is None and not entry.events:
            del self._entries[conversation_id]
            return None
        return entry

    def _sweep(self, now: float) -> None:
        # Conversations nobody reads again would otherwise stay forever; one pass per TTL period
        # keeps memory bounded at O(conversations active within ~2 TTLs).
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._ttl_s
        for conversation_id in list(self._entries):
            self._live_entry(conversation_id)
