"""Small values that expire: operator sessions and failed-login counters."""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as redis


class ExpiringValues(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_s: int) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl_s: int) -> int:
        """Add one; the first increment starts the TTL (a window that does not slide)."""
        ...

    async def aclose(self) -> None: ...


class MemoryExpiringValues:
    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}

    async def get(self, key: str) -> str | None:
        value = self._values.get(key)
        if value is None or value[1] <= time.monotonic():
            self._values.pop(key, None)
            return None
        return value[0]

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        self._values[key] = (value, time.monotonic() + ttl_s)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def incr(self, key: str, ttl_s: int) -> int:
        current = await self.get(key)
        if current is None:
            await self.set(key, "1", ttl_s)
            return 1
        self._values[key] = (str(int(current) + 1), self._values[key][1])
        return int(current) + 1

    async def aclose(self) -> None:
        self._values.clear()


class RedisExpiringValues:
    """On Redis under `<prefix>:kv:`; TTL set in the same command (or transaction) that writes.

    `client` is the caller's to close.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> str | None:
        value = await self._client.get(self._key(key))
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        await self._client.set(self._key(key), value, ex=ttl_s)

    async def delete(self, key: str) -> None:
        await self._client.delete(self._key(key))

    async def incr(self, key: str, ttl_s: int) -> int:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(self._key(key))
            pipe.expire(self._key(key), ttl_s, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def aclose(self) -> None:
        return None  # the shared client is closed by whoever opened it

    def _key(self, key: str) -> str:
        return f"{self._prefix}:kv:{key}"
