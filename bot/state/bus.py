"""Live updates between processes: operators hear about conversations, shoppers about operators.

`publish` sends a JSON frame on a topic; `subscribe` yields the frames published on it from then on.
In memory for one process; on Redis pub/sub when several bot workers share the work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

import redis.asyncio as redis


class Bus(Protocol):
    async def publish(self, topic: str, frame: dict[str, Any]) -> None: ...

    def subscribe(self, topic: str) -> Any:  # an async context manager yielding an async iterator of frames
        ...

    async def aclose(self) -> None: ...


class MemoryBus:
    """A `Bus` inside this process."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    async def publish(self, topic: str, frame: dict[str, Any]) -> None:
        for queue in self._queues.get(topic, set()):
            queue.put_nowait(frame)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues.setdefault(topic, set()).add(queue)

        async def frames() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield await queue.get()

        try:
            yield frames()
        finally:
            self._queues[topic].discard(queue)

    async def aclose(self) -> None:
        self._queues.clear()


class RedisBus:
    """A `Bus` on Redis pub/sub (channels `<prefix>:bus:<topic>`). It owns `client`."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str, password: str | None = None) -> RedisBus:
        return cls(redis.Redis.from_url(url, password=password, socket_connect_timeout=5.0), prefix)

    async def publish(self, topic: str, frame: dict[str, Any]) -> None:
        await self._client.publish(self._channel(topic), json.dumps(frame, ensure_ascii=False))

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel(topic))

        async def frames() -> AsyncIterator[dict[str, Any]]:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield json.loads(message["data"])

        try:
            yield frames()
        finally:
            with suppress(Exception):  # the connection may already be gone
                await pubsub.unsubscribe()
            await pubsub.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _channel(self, topic: str) -> str:
        return f"{self._prefix}:bus:{topic}"
