"""Per-key locks: granted in the order asked for, and forgotten when unused."""

from __future__ import annotations

import asyncio

import pytest

from bot.state.locks import KeyedLocks


@pytest.mark.asyncio
async def test_a_key_is_held_in_the_order_the_tasks_asked_for_it() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def turn(name: str, pause_s: float) -> None:
        async with locks.hold("conversation"):
            order.append(name)
            await asyncio.sleep(pause_s)

    # The first holds the free key without a pause; the later ones queue behind it in start order.
    await asyncio.gather(turn("first", 0.05), turn("second", 0), turn("third", 0), turn("fourth", 0))
    assert order == ["first", "second", "third", "fourth"]
    assert len(locks) == 0


@pytest.mark.asyncio
async def test_other_keys_do_not_wait_and_a_timed_out_or_cancelled_wait_leaves_nothing_behind() -> None:
    locks = KeyedLocks()
    async with locks.hold("a"):
        assert await locks.acquire("b", timeout_s=0.01)
        locks.release("b")
        assert not await locks.acquire("a", timeout_s=0.01)
        waiter = asyncio.create_task(locks.acquire("a"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert len(locks) == 1  # only the holder's
    assert len(locks) == 0
    assert await locks.acquire("a", timeout_s=0) and len(locks) == 1
