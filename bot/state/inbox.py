"""Incoming channel updates, kept until their reply is sent: accepted once, handed out in order per chat.

A channel (Telegram's webhook or poller) `put`s each update before it acknowledges it, so an
update the platform delivered is never lost; workers `claim` updates, answer them and `complete`
them. The inbox guarantees:

- an update id accepted within `dedup_ttl_s` is refused again (redeliveries cause no second reply);
- a chat's updates are handed out one at a time, in the order they were accepted: the next one
  only after the previous one is completed;
- an update whose worker died (its lease ran out without `complete`) is handed out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class QueuedUpdate:
    """One accepted update: `seq` numbers a chat's updates 1, 2, 3... in the order accepted."""

    entry_id: str
    chat: str
    seq: int
    payload: str  # the update as the platform sent it (JSON text)


class UpdateInbox(Protocol):
    """Where accepted updates wait for a worker."""

    async def put(self, update_id: int, chat: str, payload: str) -> bool:
        """Accept an update; False when this update id was already accepted (a redelivery)."""
        ...

    async def claim(self, count: int, block_ms: int) -> list[QueuedUpdate]:
        """Up to `count` updates this worker may answer now, at most one per chat.

        Waits up to `block_ms` when none is ready. Each claimed update is leased to this worker
        until it is completed or released; a lease that runs out hands the update to another worker.
        """
        ...

    async def renew(self, update: QueuedUpdate) -> None:
        """Extend the lease of an update still being answered."""
        ...

    async def complete(self, update: QueuedUpdate) -> None:
        """The update is answered: it is never handed out again, and its chat's next one may be."""
        ...

    async def release(self, update: QueuedUpdate, retry_in_s: float) -> None:
        """Answering failed: hand the update out again after `retry_in_s`, before its chat's later ones."""
        ...

    async def aclose(self) -> None:
        """Release connections; the inbox is unusable afterwards."""
        ...


@dataclass
class _Chat:
    accepted: int = 0  # seq of the newest accepted update
    done: int = 0  # seq of the newest completed update
    leased: bool = False
    waiting: dict[int, QueuedUpdate] = field(default_factory=dict)  # seq -> update
    not_before: float = 0.0  # monotonic time a released update may be retried


class MemoryInbox:
    """An `UpdateInbox` in this process's memory: the same guarantees, for one process.

    Nothing survives a restart; use the Redis inbox when updates must outlive the process.
    """

    def __init__(self, dedup_ttl_s: float = 86_400) -> None:
        self._dedup_ttl_s = dedup_ttl_s
        self._seen: dict[int, float] = {}  # update id -> monotonic expiry
        self._chats: dict[str, _Chat] = {}
        self._changed = asyncio.Event()
        self._counter = 0

    async def put(self, update_id: int, chat: str, payload: str) -> bool:
        now = time.monotonic()
        if self._seen.get(update_id, 0.0) > now:
            return False
        if len(self._seen) > 10_000:  # forget expired ids now and then, not on every put
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        self._seen[update_id] = now + self._dedup_ttl_s
        state = self._chats.setdefault(chat, _Chat())
        state.accepted += 1
        self._counter += 1
        state.waiting[state.accepted] = QueuedUpdate(f"{self._counter}-0", chat, state.accepted, payload)
        self._changed.set()
        return True

    async def claim(self, count: int, block_ms: int) -> list[QueuedUpdate]:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            ready = self._ready(count)
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0:
                return ready
            self._changed.clear()
            retry_at = min((s.not_before for s in self._chats.values() if s.waiting and not s.leased), default=0.0)
            wait = remaining if retry_at <= time.monotonic() else min(remaining, retry_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def _ready(self, count: int) -> list[QueuedUpdate]:
        now = time.monotonic()
        ready: list[QueuedUpdate] = []
        for state in self._chats.values():
            if len(ready) >= count:
                break
            following = state.waiting.get(state.done + 1)
            if following is not None and not state.leased and state.not_before <= now:
                state.leased = True
                ready.append(following)
        return sorted(ready, key=lambda u: int(u.entry_id.split("-")[0]))

    async def renew(self, update: QueuedUpdate) -> None:
        return None  # a lease in one process only ends with complete or release

    async def complete(self, update: QueuedUpdate) -> None:
        state = self._chats[update.chat]
        state.waiting.pop(update.seq, None)
        state.done = max(state.done, update.seq)
        state.leased = False
        if not state.waiting and state.done == state.accepted:
            del self._chats[update.chat]  # an idle chat costs nothing; its seq restarts at 1
        self._changed.set()

    async def release(self, update: QueuedUpdate, retry_in_s: float) -> None:
        state = self._chats[update.chat]
        state.leased = False
        state.not_before = time.monotonic() + retry_in_s
        self._changed.set()

    async def aclose(self) -> None:
        self._chats.clear()
