"""Conversation state: the store Protocol, its Redis and in-memory implementations."""

from bot.state.keys import StoreKeys
from bot.state.memory import MemoryStore
from bot.state.redis_store import RedisStore
from bot.state.store import ConversationBusy, ConversationStore, Event, StoreUnavailable

__all__ = [
    "ConversationBusy",
    "ConversationStore",
    "Event",
    "MemoryStore",
    "RedisStore",
    "StoreKeys",
    "StoreUnavailable",
]
