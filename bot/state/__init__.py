"""Conversation state: the store Protocol, its Redis and in-memory implementations."""

from bot.state.keys import StoreKeys
from bot.state.memory import MemoryStore
from bot.state.redis_store import RedisStore
from bot.state.review import FileReviewLog, RedisReviewLog, ReviewItem, ReviewLog
from bot.state.store import ConversationBusy, ConversationStore, Event, StoreUnavailable

__all__ = [
    "ConversationBusy",
    "ConversationStore",
    "FileReviewLog",
    "RedisReviewLog",
    "ReviewItem",
    "ReviewLog",
    "Event",
    "MemoryStore",
    "RedisStore",
    "StoreKeys",
    "StoreUnavailable",
]
