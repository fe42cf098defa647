"""Per-key locks for one process, each dropped once nobody holds it or waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # the holder plus its waiters; the slot is dropped when it reaches 0


class KeyedLocks:
    """One `asyncio.Lock` per key, granted in the order it was asked for.

    A free lock is taken without giving the event loop a turn, so tasks that reach `hold` in a
    given order hold the key in that order.
    """

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        """Keys held or waited for now."""
        return len(self._slots)

    async def acquire(self, key: str, timeout_s: float | None = None) -> bool:
        """Take `key`; False when `timeout_s` passed before it was free. Give it back with `release`."""
        slot = self._slots.setdefault(key, _Slot())
        slot.users += 1
        try:
            # asyncio.timeout (not wait_for): a lock granted at the deadline is never lost.
            async with asyncio.timeout(timeout_s):
                await slot.lock.acquire()
        except BaseException as exc:  # timed out or cancelled while waiting
            self._leave(key, slot)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def release(self, key: str) -> None:
        slot = self._slots[key]
        slot.lock.release()
        self._leave(key, slot)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold `key` exclusively for the block, however long the wait."""
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def _leave(self, key: str, slot: _Slot) -> None:
        slot.users -= 1
        if slot.users == 0:
            del self._slots[key]
