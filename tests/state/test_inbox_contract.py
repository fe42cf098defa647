"""The update inbox contract, run against the in-memory inbox and a real Redis Stream."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.state.inbox import MemoryInbox, QueuedUpdate, UpdateInbox
from bot.state.redis_inbox import RedisInbox
from tests.conftest import redis_url

InboxFactory = Callable[..., UpdateInbox]


@pytest.fixture(params=["memory", "redis"])
def make_inbox(request: pytest.FixtureRequest, make_redis_inbox: InboxFactory) -> InboxFactory:
    """A factory of inboxes sharing one backend (for Redis: several workers of one deployment)."""
    if request.param == "redis":
        return make_redis_inbox
    shared = MemoryInbox()
    return lambda consumer="worker-1", **options: shared


@pytest.fixture
async def make_redis_inbox(redis_prefix: str) -> AsyncIterator[InboxFactory]:
    """Workers of one deployment on Redis: only there can one die while the others go on."""
    opened: list[RedisInbox] = []

    def factory(consumer: str = "worker-1", **options: Any) -> RedisInbox:
        inbox = RedisInbox.from_url(redis_url(), redis_prefix, "telegram", consumer, **options)
        opened.append(inbox)
        return inbox

    yield factory
    for inbox in opened:
        await inbox.aclose()


def _update(update_id: int, chat: str) -> str:
    return json.dumps({"update_id": update_id, "message": {"chat": {"id": chat}, "text": f"u{update_id}"}})


def _ids(updates: list[QueuedUpdate]) -> list[int]:
    return [json.loads(u.payload)["update_id"] for u in updates]


async def test_a_redelivered_update_is_refused_and_handed_out_once(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    assert await inbox.put(1, "42", _update(1, "42"))
    assert not await inbox.put(1, "42", _update(1, "42"))
    claimed = await inbox.claim(10, block_ms=100)
    assert _ids(claimed) == [1]
    await inbox.complete(claimed[0])
    assert not await inbox.put(1, "42", _update(1, "42")), "still a duplicate after it was answered"
    assert await inbox.claim(10, block_ms=50) == []


async def test_a_chats_updates_come_one_at_a_time_in_order(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    for update_id, chat in [(10, "a"), (11, "a"), (12, "b"), (13, "a")]:
        assert await inbox.put(update_id, chat, _update(update_id, chat))
    first = await inbox.claim(10, block_ms=100)
    assert sorted(_ids(first)) == [10, 12], "one update per chat, the oldest"
    assert await inbox.claim(10, block_ms=50) == [], "nothing more until those are answered"
    a_first = next(u for u in first if u.chat == "a")
    await inbox.complete(a_first)
    assert _ids(await inbox.claim(10, block_ms=100)) == [11]


async def test_a_released_update_comes_back_before_its_chats_later_ones(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    await inbox.put(20, "c", _update(20, "c"))
    await inbox.put(21, "c", _update(21, "c"))
    (first,) = await inbox.claim(10, block_ms=100)
    await inbox.release(first, retry_in_s=0.2)
    assert await inbox.claim(10, block_ms=50) == [], "not before its retry time"
    again = await inbox.claim(10, block_ms=1000)
    assert _ids(again) == [20]


async def test_claim_wakes_up_for_an_update_put_while_it_waits(make_inbox: InboxFactory) -> None:
    inbox = make_inbox()
    await inbox.claim(1, block_ms=10)  # the Redis consumer group exists before the put

    async def put_later() -> None:
        await asyncio.sleep(0.1)
        await inbox.put(30, "d", _update(30, "d"))

    task = asyncio.create_task(put_later())
    claimed = await inbox.claim(5, block_ms=3000)
    await task
    assert _ids(claimed) == [30]


async def test_concurrent_workers_answer_every_update_once_and_in_chat_order(make_inbox: InboxFactory) -> None:
    workers = [make_inbox(f"worker-{i}") for i in range(3)]
    expected: dict[str, list[int]] = {}
    update_id = 100
    for _ in range(8):
        for chat in ("p", "q", "r", "s"):
            update_id += 1
            expected.setdefault(chat, []).append(update_id)
            assert await workers[0].put(update_id, chat, _update(update_id, chat))
    answered: dict[str, list[int]] = {}
    busy: set[str] = set()
    rng = random.Random(3)

    async def work(inbox: UpdateInbox) -> None:
        idle = 0
        while idle < 5:
            claimed = await inbox.claim(2, block_ms=40)
            idle = 0 if claimed else idle + 1
            for update in claimed:
                assert update.chat not in busy, "two workers answered one chat at the same time"
                busy.add(update.chat)
                await asyncio.sleep(rng.random() / 100)
                answered.setdefault(update.chat, []).extend(_ids([update]))
                busy.discard(update.chat)
                await inbox.complete(update)

    await asyncio.gather(*(work(w) for w in workers))
    assert answered == expected


async def test_an_update_whose_worker_died_is_answered_by_another(make_redis_inbox: InboxFactory) -> None:
    dead = make_redis_inbox("worker-dead", lease_ms=300, claim_idle_ms=200)
    await dead.put(40, "e", _update(40, "e"))
    await dead.put(41, "e", _update(41, "e"))
    (taken,) = await dead.claim(10, block_ms=100)  # ... and the worker dies without completing it
    survivor = make_redis_inbox("worker-2", lease_ms=300, claim_idle_ms=200)
    claimed = await survivor.claim(10, block_ms=5_000)  # waits for the lease to run out
    assert _ids(claimed) == [40], "the dead worker's update, before the chat's next one"
    await survivor.complete(claimed[0])
    later = await survivor.claim(10, block_ms=300)
    assert _ids(later) == [41]
    assert taken.seq == claimed[0].seq


async def test_a_restarted_worker_picks_up_its_own_unfinished_update(make_redis_inbox: InboxFactory) -> None:
    before = make_redis_inbox("worker-stable", lease_ms=200, claim_idle_ms=60_000)
    await before.put(50, "f", _update(50, "f"))
    assert _ids(await before.claim(10, block_ms=100)) == [50]
    await before.aclose()
    after = make_redis_inbox("worker-stable", lease_ms=200, claim_idle_ms=60_000)
    claimed = await after.claim(10, block_ms=5_000)
    assert _ids(claimed) == [50], "picked up once the dead process's lease ran out"
    await after.complete(claimed[0])
    assert await after.claim(10, block_ms=50) == []
