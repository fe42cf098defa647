"""One contract for ConversationStore, run on MemoryStore and on RedisStore against a real Redis.

The Redis half needs a redis-server (REDIS_URL, default redis://127.0.0.1:6379/15) and fails
without one, unless SHOPBOT_ALLOW_NO_REDIS=1 turns that failure into a skip.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from bot.state import (
    ConversationBusy,
    ConversationStore,
    Event,
    MemoryStore,
    RedisStore,
    StoreKeys,
    StoreUnavailable,
)
from bot.types import Conversation, Mode, Turn

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
# Small numbers so that capping and lock waits show within a fast test.
SETTINGS: dict[str, Any] = {"ttl_s": 60.0, "events_limit": 5, "lock_wait_ms": 300}


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryBackend:
    """MemoryStore under test: one process, so every 'worker' is the same store."""

    kind = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = self.make()

    def make(self, **settings: Any) -> ConversationStore:
        """A store with other settings (its own state: memory is not shared)."""
        return MemoryStore(**{**SETTINGS, **settings}, clock=self.clock)

    def worker(self) -> ConversationStore:
        """Another handler in the same process shares the one store."""
        return self.store

    async def elapse(self, seconds: float) -> None:
        self.clock.now += seconds

    async def close(self) -> None:
        await self.store.aclose()


class RedisBackend:
    """RedisStore under test: every store shares a per-test key prefix on the real Redis."""

    kind = "redis"

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client  # the test's own client, for inspecting keys
        self.prefix = prefix
        self.keys = StoreKeys(prefix)
        self._stores: list[RedisStore] = []
        self.store = self.make()

    def make(self, **settings: Any) -> RedisStore:
        """Another worker's store on the same Redis and prefix, with its own pool."""
        store = RedisStore.from_url(REDIS_URL, prefix=self.prefix, **{**SETTINGS, **settings})
        self._stores.append(store)
        return store

    def worker(self) -> ConversationStore:
        return self.make()

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        for store in self._stores:
            await store.aclose()


@asynccontextmanager
async def open_redis_backend() -> AsyncIterator[RedisBackend]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        await client.aclose()
        if os.environ.get("SHOPBOT_ALLOW_NO_REDIS") == "1":
            pytest.skip(f"no Redis at {REDIS_URL} ({error}); SHOPBOT_ALLOW_NO_REDIS=1 allows it")
        pytest.fail(
            f"no Redis answers at {REDIS_URL} ({error}). The store contract must run against a "
            "real redis-server: start one, or point REDIS_URL at one, or set "
            "SHOPBOT_ALLOW_NO_REDIS=1 to skip the Redis half.",
            pytrace=False,
        )
    prefix = f"shopbot-test:{uuid.uuid4().hex}"
    backend = RedisBackend(client, prefix)
    try:
        yield backend
    finally:
        await backend.close()
        leftovers = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if leftovers:
            await client.delete(*leftovers)
        await client.aclose()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[MemoryBackend | RedisBackend]:
    if request.param == "memory":
        memory = MemoryBackend()
        yield memory
        await memory.close()
    else:
        async with open_redis_backend() as real:
            yield real


@pytest_asyncio.fixture
async def redis_backend() -> AsyncIterator[RedisBackend]:
    async with open_redis_backend() as real:
        yield real


@pytest_asyncio.fixture
async def memory_backend() -> AsyncIterator[MemoryBackend]:
    memory = MemoryBackend()
    yield memory
    await memory.close()


Backend = MemoryBackend | RedisBackend

# Ids that channels could send and that would collide under naive "prefix:conv:<id>" keys.
AWKWARD_IDS = [
    "a:b",
    "a",
    "b",
    "a:b:c",
    "conv:a",
    "events:a",
    "{a}",
    "a}b",
    "*",
    "a*",
    "[a]",
    "a b",
    "",
    "заказ-🛒",
    "x" * 500,
    "x" * 499 + "y",
    "-1001234567890",
    "#" + "0" * 64,
]


def shop_conversation(conversation_id: str = "tg:42") -> Conversation:
    return Conversation(
        id=conversation_id,
        channel="telegram",
        mode=Mode.HUMAN,
        slots={
            "order_id": "A-1001",
            "items": [{"sku": "MUG-RED", "qty": 2}],
            "vip": True,
            "discount": 0.15,
            "note": "Größe M, 🎁",
            "coupon": None,
        },
        history=(
            Turn("user", "Where is my order?", 1.0, "track_order", 0.93, "action"),
            Turn("bot", "Which order number?", 2.0, route="action"),
            Turn("operator", "Hi, Alice here.", 3.0),
        ),
        operator="alice",
        updated_at=3.5,
    )


def event(n: int, kind: str = "user") -> Event:
    return Event(kind=kind, at=float(n), data={"n": n, "text": f"message {n}"})


@pytest.mark.asyncio
async def test_unknown_conversation_is_none(backend: Backend) -> None:
    assert await backend.store.load("nobody") is None
    assert await backend.store.events("nobody") == []


@pytest.mark.asyncio
async def test_save_load_round_trip(backend: Backend) -> None:
    conversation = shop_conversation()
    await backend.store.save(conversation)
    assert await backend.store.load("tg:42") == conversation

    resolved = Conversation(id="tg:42", channel="telegram", mode=Mode.RESOLVED, updated_at=9.0)
    await backend.store.save(resolved)
    assert await backend.store.load("tg:42") == resolved


@pytest.mark.asyncio
async def test_events_appended_in_order_and_capped(backend: Backend) -> None:
    store, conversation = backend.store, shop_conversation()
    await store.save(conversation, [event(1), event(2), event(3, "parse")])
    assert await store.events(conversation.id) == [event(1), event(2), event(3, "parse")]

    await store.save(conversation, [event(n) for n in range(4, 9)])
    # events_limit=5 keeps the newest five, oldest first.
    assert await store.events(conversation.id) == [event(n) for n in range(4, 9)]
    assert await store.events(conversation.id, limit=2) == [event(7), event(8)]
    assert await store.events(conversation.id, limit=0) == []

    await store.save(conversation)  # no events: the log stays as it was
    assert [e.data["n"] for e in await store.events(conversation.id)] == [4, 5, 6, 7, 8]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("slots", "events", "error"),
    [
        ({"when": object()}, [], TypeError),
        ({"score": float("nan")}, [], ValueError),
        ({}, [Event("slot", 1.0, {"tags": {"a", "b"}})], TypeError),
    ],
)
async def test_value_that_is_not_json_fails_and_writes_nothing(
    backend: Backend, slots: dict[str, object], events: list[Event], error: type[Exception]
) -> None:
    store, before = backend.store, shop_conversation()
    await store.save(before, [event(1)])
    bad = Conversation(id=before.id, mode=Mode.BOT, slots=slots)
    with pytest.raises(error):
        await store.save(bad, events)
    assert await store.load(before.id) == before
    assert await store.events(before.id) == [event(1)]


@pytest.mark.asyncio
async def test_expiry_and_refresh_on_every_write(backend: Backend) -> None:
    store = backend.make(ttl_s=1.0)
    first, second = shop_conversation("c"), Conversation(id="c", mode=Mode.BOT)
    await store.save(first, [event(1)])
    await backend.elapse(0.6)
    await store.save(second)  # refreshes the conversation and the event log
    await backend.elapse(0.6)  # 1.2 s after the first write, 0.6 s after the second
    assert await store.load("c") == second
    assert await store.events("c") == [event(1)]
    await backend.elapse(1.0)
    assert await store.load("c") is None
    assert await store.events("c") == []


@pytest.mark.asyncio
async def test_delete(backend: Backend) -> None:
    store = backend.store
    await store.save(shop_conversation("gone"), [event(1)])
    await store.save(shop_conversation("kept"), [event(2)])
    await store.delete("gone")
    await store.delete("never-existed")
    assert await store.load("gone") is None
    assert await store.events("gone") == []
    assert await store.load("kept") == shop_conversation("kept")
    assert await store.events("kept") == [event(2)]


@pytest.mark.asyncio
async def test_lock_excludes_a_concurrent_holder(backend: Backend) -> None:
    first_store, second_store = backend.store, backend.worker()
    log: list[str] = []
    first_inside = asyncio.Event()

    async def first() -> None:
        async with first_store.lock("c:1"):
            log.append("first in")
            first_inside.set()
            await asyncio.sleep(0.1)
            log.append("first out")

    async def second() -> float:
        await first_inside.wait()
        started = time.monotonic()
        async with second_store.lock("c:1"):
            log.append("second in")
        return time.monotonic() - started

    _, waited = await asyncio.gather(first(), second())
    assert log == ["first in", "first out", "second in"]
    assert waited >= 0.05


@pytest.mark.asyncio
async def test_lock_wait_timeout_raises_busy_with_the_id(backend: Backend) -> None:
    holder, waiter = backend.store, backend.worker()
    async with holder.lock("tg:7"):
        started = time.monotonic()
        with pytest.raises(ConversationBusy) as busy:
            async with waiter.lock("tg:7"):
                pytest.fail("took a lock that another holder has")
        assert busy.value.conversation_id == "tg:7"
        assert time.monotonic() - started >= 0.25  # lock_wait_ms=300
        async with waiter.lock("tg:8"):  # other conversations are not blocked
            pass


@pytest.mark.asyncio
async def test_lock_is_released_when_the_holder_fails_or_is_cancelled(backend: Backend) -> None:
    store, other = backend.store, backend.worker()
    with pytest.raises(RuntimeError):
        async with store.lock("c"):
            raise RuntimeError("handler crashed")

    inside = asyncio.Event()

    async def stuck_handler() -> None:
        async with store.lock("c"):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(stuck_handler())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    async with other.lock("c"):
        assert time.monotonic() - started < 0.1


@pytest.mark.asyncio
async def test_awkward_ids_round_trip_and_never_collide(backend: Backend) -> None:
    store = backend.store
    for n, conversation_id in enumerate(AWKWARD_IDS):
        conversation = Conversation(id=conversation_id, slots={"n": n})
        await store.save(conversation, [event(n)])
    for n, conversation_id in enumerate(AWKWARD_IDS):
        loaded = await store.load(conversation_id)
        assert loaded == Conversation(id=conversation_id, slots={"n": n}), conversation_id
        assert await store.events(conversation_id) == [event(n)], conversation_id
    # Different locks: taking both at once neither waits nor raises ConversationBusy.
    async with store.lock("a:b"), store.lock("a"):
        pass


@pytest.mark.asyncio
async def test_ping(backend: Backend) -> None:
    assert await backend.store.ping() is True


# --- Redis only: what a real server adds (TTL on keys, other processes, dead holders) -------


@pytest.mark.asyncio
async def test_redis_sets_ttl_on_every_key(redis_backend: RedisBackend) -> None:
    client, keys, store = redis_backend.client, redis_backend.keys, redis_backend.store
    await store.save(shop_conversation("c"), [event(1)])
    for key in (keys.conversation("c"), keys.events("c")):
        assert 0 < await client.pttl(key) <= 60_000, key

    await client.pexpire(keys.events("c"), 5_000)
    await store.save(shop_conversation("c"))  # no events: the log's TTL is still refreshed
    assert await client.pttl(keys.events("c")) > 5_000

    async with store.lock("c"):
        assert 0 < await client.pttl(keys.lock("c")) <= 10_000
    assert await client.exists(keys.lock("c")) == 0


@pytest.mark.asyncio
async def test_redis_values_are_json(redis_backend: RedisBackend) -> None:
    client, keys = redis_backend.client, redis_backend.keys
    await redis_backend.store.save(shop_conversation("c"), [event(1)])
    raw = await client.get(keys.conversation("c"))
    assert raw is not None
    assert json.loads(raw)["operator"] == "alice"
    assert [json.loads(e) for e in await client.lrange(keys.events("c"), 0, -1)] == [
        event(1).to_json()
    ]


@pytest.mark.asyncio
async def test_redis_keys_stay_under_prefix_and_structured(redis_backend: RedisBackend) -> None:
    for conversation_id in AWKWARD_IDS:
        await redis_backend.store.save(Conversation(id=conversation_id), [event(1)])
    found = [
        key.decode()
        async for key in redis_backend.client.scan_iter(match=f"{redis_backend.prefix}*")
    ]
    assert len(found) == 2 * len(AWKWARD_IDS)
    structure = re.compile(
        re.escape(redis_backend.prefix) + r":(conv|events):\{([A-Za-z0-9_.-]{1,64}|#[0-9a-f]{64})\}"
    )
    for key in found:
        assert structure.fullmatch(key), key


@pytest.mark.asyncio
async def test_redis_lock_of_a_dead_holder_expires(redis_backend: RedisBackend) -> None:
    client, keys = redis_backend.client, redis_backend.keys
    # A worker took the lock and died without releasing it.
    await client.set(keys.lock("c"), "dead-worker-token", px=200)
    store = redis_backend.make(lock_wait_ms=2000)
    started = time.monotonic()
    async with store.lock("c"):
        assert time.monotonic() - started >= 0.1
        assert await client.get(keys.lock("c")) != b"dead-worker-token"


@pytest.mark.asyncio
async def test_redis_late_release_keeps_the_new_holders_lock(
    redis_backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    client, keys = redis_backend.client, redis_backend.keys
    slow = redis_backend.make(lock_ttl_ms=150)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(slow.lock("c"))
        await asyncio.sleep(0.3)  # the slow holder overran lock_ttl_ms
        async with redis_backend.worker().lock("c"):
            new_token = await client.get(keys.lock("c"))
            with caplog.at_level(logging.WARNING, logger="bot.state.redis_store"):
                await stack.aclose()  # the slow holder releases with its stale token
            assert await client.get(keys.lock("c")) == new_token
            assert "expired before release" in caplog.text
            with pytest.raises(ConversationBusy):
                async with redis_backend.make(lock_wait_ms=50).lock("c"):
                    pass


@pytest.mark.asyncio
async def test_redis_new_store_sees_data_after_restart(redis_backend: RedisBackend) -> None:
    before = redis_backend.make()
    await before.save(shop_conversation(), [event(1), event(2)])
    await before.aclose()
    after = RedisStore.from_url(REDIS_URL, prefix=redis_backend.prefix, ttl_s=60)
    try:
        assert await after.load("tg:42") == shop_conversation()
        assert await after.events("tg:42") == [event(1), event(2)]
    finally:
        await after.aclose()


@pytest.mark.asyncio
async def test_redis_closed_port_pings_false_and_writes_fail() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{port}/0",
        prefix="shopbot-test",
        ttl_s=60,
        socket_timeout=1.0,
        retries=1,
    )
    try:
        started = time.monotonic()
        assert await store.ping() is False
        assert time.monotonic() - started < 5
        with pytest.raises(StoreUnavailable) as error:
            await store.save(shop_conversation())
        assert isinstance(error.value.__cause__, RedisConnectionError)
        assert error.value.conversation_id == shop_conversation().id
        with pytest.raises(StoreUnavailable):
            await store.load("c1")
        with pytest.raises(StoreUnavailable):
            async with store.lock("c1"):
                pass
    finally:
        await store.aclose()


# --- Memory only ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_lock_bookkeeping_is_dropped_when_unused(
    memory_backend: MemoryBackend,
) -> None:
    store = memory_backend.store
    assert isinstance(store, MemoryStore)
    async with store.lock("a"):
        with pytest.raises(ConversationBusy):
            async with store.lock("a"):
                pass
    waiter = asyncio.create_task(_hold(store, "b"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(store._locks) == 0  # white-box: one asyncio.Lock per id must not pile up


async def _hold(store: MemoryStore, conversation_id: str) -> None:
    async with store.lock(conversation_id):
        await asyncio.sleep(60)


# --- Keys ------------------------------------------------------------------------------------


def test_keys_never_collide_and_hide_awkward_ids() -> None:
    keys = StoreKeys("shop")
    built = [
        make(conversation_id)
        for conversation_id in AWKWARD_IDS
        for make in (keys.conversation, keys.events, keys.lock)
    ]
    assert len(set(built)) == len(built)
    assert keys.conversation("a:b") != keys.conversation("a") != keys.conversation("b")
    assert keys.conversation("12345") == "shop:conv:{12345}"  # plain ids stay readable
    assert all(len(key) < 100 for key in built)


@pytest.mark.parametrize("prefix", ["", "shop bot", "shop*", "shop{x}"])
def test_keys_reject_a_prefix_that_breaks_key_structure(prefix: str) -> None:
    with pytest.raises(ValueError):
        StoreKeys(prefix)
