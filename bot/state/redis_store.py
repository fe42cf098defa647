"""Conversation store on Redis: shared by every bot worker, survives their restarts."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.state.keys import StoreKeys
from bot.state.store import (
    ConversationBusy,
    Event,
    StoreUnavailable,
    decode_conversation,
    decode_event,
    encode_conversation,
    encode_event,
)
from bot.types import Conversation

log = logging.getLogger(__name__)

# Delete the lock only if it still holds our token: after our lock_ttl_ms ran out another worker
# may own it, and a bare DEL would break their exclusion.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.05


@contextmanager
def _reachable(conversation_id: str) -> Iterator[None]:
    """Redis connection trouble (after the client's own retries) becomes StoreUnavailable."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise StoreUnavailable(conversation_id, str(error)) from error


class RedisStore:
    """A `ConversationStore` on Redis. It owns `client` and closes it in `aclose`.

    Keys (see StoreKeys): the conversation as one JSON string, its events as a list of JSON
    strings trimmed to `events_limit`, and a lock string holding a random token. Every write
    sets the TTL (`ttl_s`, millisecond precision) in the same command or transaction.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: StoreKeys,
        ttl_s: float,
        events_limit: int = 500,
        lock_ttl_ms: int = 10000,
        lock_wait_ms: int = 5000,
    ) -> None:
        if ttl_s < 0.001 or events_limit <= 0 or lock_ttl_ms <= 0 or lock_wait_ms < 0:
            raise ValueError(
                "ttl_s (>= 0.001), events_limit and lock_ttl_ms must be positive, "
                "lock_wait_ms not negative"
            )
        self._client = client
        self._keys = keys
        self._ttl_ms = int(ttl_s * 1000)
        self._events_limit = events_limit
        self._lock_ttl_ms = lock_ttl_ms
        self._lock_wait_ms = lock_wait_ms
        self._release_lock = client.register_script(_RELEASE_LOCK)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        ttl_s: float,
        events_limit: int = 500,
        lock_ttl_ms: int = 10000,
        lock_wait_ms: int = 5000,
        socket_timeout: float = 5.0,
        retries: int = 3,
        health_check_interval: int = 30,
        max_connections: int | None = None,
        password: str | None = None,
    ) -> RedisStore:
        """A store with its own connection pool, explicit timeouts and retry with backoff.

        Connecting is lazy: nothing touches the network until the first command.
        """
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=health_check_interval,
            max_connections=max_connections,
            decode_responses=False,
            password=password,
        )
        return cls(
            client,
            StoreKeys(prefix),
            ttl_s=ttl_s,
            events_limit=events_limit,
            lock_ttl_ms=lock_ttl_ms,
            lock_wait_ms=lock_wait_ms,
        )

    async def load(self, conversation_id: str) -> Conversation | None:
        """The stored conversation, or None if unknown or expired."""
        with _reachable(conversation_id):
            raw = await self._client.get(self._keys.conversation(conversation_id))
        return None if raw is None else decode_conversation(raw)

    async def save(self, conversation: Conversation, events: Sequence[Event] = ()) -> None:
        """Write the conversation and append `events` in one MULTI/EXEC; refreshes both TTLs."""
        # Encode before the pipeline so that a bad value writes nothing.
        encoded = encode_conversation(conversation)
        new_events = [encode_event(e) for e in events]
        events_key = self._keys.events(conversation.id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.conversation(conversation.id), encoded, px=self._ttl_ms)
            if new_events:
                pipe.rpush(events_key, *new_events)
                pipe.ltrim(events_key, -self._events_limit, -1)
            # Also without new events, so the log never expires before its conversation.
            pipe.pexpire(events_key, self._ttl_ms)
            with _reachable(conversation.id):
                await pipe.execute()

    async def events(self, conversation_id: str, limit: int = 100) -> list[Event]:
        """The newest `limit` events, oldest first."""
        if limit <= 0:
            return []
        with _reachable(conversation_id):
            raw = await self._client.lrange(self._keys.events(conversation_id), -limit, -1)
        return [decode_event(item) for item in raw]

    async def delete(self, conversation_id: str) -> None:
        """Forget the conversation and its events (its lock, if held, stays with its holder)."""
        await self._client.delete(
            self._keys.conversation(conversation_id), self._keys.events(conversation_id)
        )

    @asynccontextmanager
    async def lock(self, conversation_id: str) -> AsyncIterator[None]:
        """Hold the conversation across workers; raises ConversationBusy after lock_wait_ms.

        The lock expires after lock_ttl_ms even if its holder dies; a holder that overruns it
        loses exclusivity (logged at release).
        """
        key = self._keys.lock(conversation_id)
        token = secrets.token_hex(16)
        with _reachable(conversation_id):
            await self._acquire(key, token, conversation_id)
        try:
            yield
        finally:
            await self._release(key, token, conversation_id)

    async def ping(self) -> bool:
        """True when Redis answers PING; False (never an exception) when it does not."""
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError) as error:
            log.warning("redis ping failed: %s", error)
            return False

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose(close_connection_pool=True)

    async def _acquire(self, key: str, token: str, conversation_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait_ms / 1000
        pause = _POLL_FIRST_S
        while not await self._client.set(key, token, nx=True, px=self._lock_ttl_ms):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ConversationBusy(conversation_id, self._lock_wait_ms)
            # Jitter so that workers waiting on the same conversation don't poll in lockstep.
            await asyncio.sleep(min(remaining, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, _POLL_MAX_S)

    async def _release(self, key: str, token: str, conversation_id: str) -> None:
        try:
            released: Any = await self._release_lock(keys=[key], args=[token])
        except RedisError as error:
            # The lock still expires after lock_ttl_ms; don't hide the caller's own outcome.
            log.warning("could not release lock of %r: %s", conversation_id, error)
            return
        if not released:
            log.warning(
                "lock of %r expired before release (held longer than %d ms)",
                conversation_id,
                self._lock_ttl_ms,
            )
