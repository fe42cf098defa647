"""Which client message ids a conversation has already received: a resent message is answered once."""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as redis

from bot.state.keys import StoreKeys


class SeenMessages(Protocol):
    async def first_time(self, conversation_id: str, message_id: str) -> bool:
        """True the first time this id arrives in this conversation (within the TTL), False after."""
        ...

    async def aclose(self) -> None: ...


class MemorySeenMessages:
    """`SeenMessages` in this process's memory."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._seen: dict[tuple[str, str], float] = {}

    async def first_time(self, conversation_id: str, message_id: str) -> bool:
        now = time.monotonic()
        if len(self._seen) > 50_000:  # forget expired ids now and then, not on every message
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        key = (conversation_id, message_id)
        if self._seen.get(key, 0.0) > now:
            return False
        self._seen[key] = now + self._ttl_s
        return True

    async def aclose(self) -> None:
        self._seen.clear()


class RedisSeenMessages:
    """`SeenMessages` on Redis (`SET NX EX`), shared by every worker. `client` is the caller's to close."""

    def __init__(self, client: redis.Redis, keys: StoreKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    async def first_time(self, conversation_id: str, message_id: str) -> bool:
        key = self._keys.message_seen(conversation_id, message_id)
        return bool(await self._client.set(key, "1", nx=True, ex=self._ttl_s))

    async def aclose(self) -> None:
        return None  # the shared client is closed by whoever opened it
