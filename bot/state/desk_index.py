"""The operators' inbox: which conversations wait for a person, belong to one, or were resolved.

Each conversation a person is involved in has one `DeskItem`; views list them newest activity first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis.asyncio as redis

VIEWS = ("waiting", "mine", "open", "resolved")
_RESOLVED_KEPT = 500  # resolved conversations listed in the console


@dataclass(frozen=True)
class DeskItem:
    id: str
    channel: str
    state: str  # "waiting" | "human" | "bot" (handed back) | "resolved"
    operator: str | None
    reason: str
    last_message: dict[str, Any] | None
    last_activity: float
    waiting_since: float | None
    unread: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeskItem:
        return cls(**data)

    def in_view(self, view: str, operator: str) -> bool:
        if view == "waiting":
            return self.state == "waiting"
        if view == "mine":
            return self.state == "human" and self.operator == operator
        if view == "open":
            return self.state in ("waiting", "human")
        return self.state == "resolved"


class DeskIndex(Protocol):
    async def put(self, item: DeskItem) -> None: ...

    async def get(self, conversation_id: str) -> DeskItem | None: ...

    async def list(self, view: str, operator: str, limit: int = 200) -> list[DeskItem]: ...

    async def aclose(self) -> None: ...


class MemoryDeskIndex:
    def __init__(self) -> None:
        self._items: dict[str, DeskItem] = {}

    async def put(self, item: DeskItem) -> None:
        self._items[item.id] = item

    async def get(self, conversation_id: str) -> DeskItem | None:
        return self._items.get(conversation_id)

    async def list(self, view: str, operator: str, limit: int = 200) -> list[DeskItem]:
        items = sorted((i for i in self._items.values() if i.in_view(view, operator)),
                       key=lambda i: i.last_activity, reverse=True)
        return items[:limit]

    async def aclose(self) -> None:
        self._items.clear()


class RedisDeskIndex:
    """Items as JSON in one hash; open and resolved conversations in two sorted sets by last activity.

    `client` is the caller's to close.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self._client = client
        self._items = f"{prefix}:desk:items"
        self._open = f"{prefix}:desk:open"
        self._resolved = f"{prefix}:desk:resolved"
        self._ttl_s = ttl_s

    async def put(self, item: DeskItem) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._items, item.id, json.dumps(item.to_json(), ensure_ascii=False))
            pipe.expire(self._items, self._ttl_s)
            pipe.zrem(self._open, item.id)
            pipe.zrem(self._resolved, item.id)
            if item.state in ("waiting", "human"):
                pipe.zadd(self._open, {item.id: item.last_activity})
            elif item.state == "resolved":
                pipe.zadd(self._resolved, {item.id: item.last_activity})
                pipe.zremrangebyrank(self._resolved, 0, -_RESOLVED_KEPT - 1)
            pipe.expire(self._open, self._ttl_s)
            pipe.expire(self._resolved, self._ttl_s)
            await pipe.execute()

    async def get(self, conversation_id: str) -> DeskItem | None:
        raw = await self._client.hget(self._items, conversation_id)
        return DeskItem.from_json(json.loads(raw)) if raw else None

    async def list(self, view: str, operator: str, limit: int = 200) -> list[DeskItem]:
        key = self._resolved if view == "resolved" else self._open
        ids: list[Any] = await self._client.zrevrange(key, 0, limit * 2)
        if not ids:
            return []
        raws = await self._client.hmget(self._items, ids)
        items = [DeskItem.from_json(json.loads(r)) for r in raws if r]
        return [i for i in items if i.in_view(view, operator)][:limit]

    async def aclose(self) -> None:
        return None  # the shared client is closed by whoever opened it
