"""The update inbox on a Redis Stream: shared by every worker, survives their crashes and restarts."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

from bot.state.inbox import QueuedUpdate
from bot.state.keys import InboxKeys

# Accept an update once: the de-duplication key, the chat's sequence number and the stream entry
# are written together, so a crash can never leave an accepted update without its entry.
_PUT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local seq = redis.call('HINCRBY', KEYS[2], 'accepted', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'chat', ARGV[2], 'seq', seq, 'update', ARGV[3])
return seq
"""
# May this worker answer update `seq` of the chat now? Only the one after the last completed, and
# only while no other worker holds the chat's lease.
_BEGIN = """
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
local seq = tonumber(ARGV[1])
if seq <= done then return 'done' end
if seq > done + 1 then return 'wait' end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 'wait' end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 'go'
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Answered: record it (only while the chat's record exists, so an expired record is never revived
# with a stale `done`), drop our lease, and remove the entry from the group and the stream.
_COMPLETE = """
if redis.call('HEXISTS', KEYS[1], 'accepted') == 1 then
    local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
    if tonumber(ARGV[1]) > done then redis.call('HSET', KEYS[1], 'done', ARGV[1]) end
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[3], ARGV[4])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class _Waiting:
    update: QueuedUpdate
    not_before: float = 0.0  # monotonic


class RedisInbox:
    """An `UpdateInbox` on a Redis Stream read through a consumer group. It owns `client`.

    `consumer` names this worker in the group (a stable name lets a restarted worker pick up its
    own unfinished updates at once); leases carry a random token of this process, so two processes
    with the same consumer name still never answer the same update.
    """

    def __init__(self, client: redis.Redis, keys: InboxKeys, consumer: str, *, dedup_ttl_s: float = 86_400,
                 lease_ms: int = 15_000, claim_idle_ms: int = 30_000) -> None:
        if lease_ms <= 0 or claim_idle_ms <= 0 or dedup_ttl_s <= 0:
            raise ValueError("lease_ms, claim_idle_ms and dedup_ttl_s must be positive")
        self._client = client
        self._keys = keys
        self._consumer = consumer
        self._token = secrets.token_hex(8)
        self._dedup_ms = int(dedup_ttl_s * 1000)
        self._lease_ms = lease_ms
        self._claim_idle_ms = claim_idle_ms
        self._waiting: dict[str, _Waiting] = {}  # entry id -> an update read but not yet ready
        self._active: set[str] = set()  # entry ids claimed by this process and not yet finished
        self._group_ready = False
        self._own_pending_read = False
        self._next_autoclaim = 0.0
        self._put = client.register_script(_PUT)
        self._begin = client.register_script(_BEGIN)
        self._renew = client.register_script(_RENEW)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, prefix: str, channel: str, consumer: str, *, password: str | None = None,
                 **options: Any) -> RedisInbox:
        client = redis.Redis.from_url(url, password=password, socket_timeout=10.0, socket_connect_timeout=5.0,
                                      health_check_interval=30)
        return cls(client, InboxKeys(prefix, channel), consumer, **options)

    async def put(self, update_id: int, chat: str, payload: str) -> bool:
        keys = [self._keys.seen(update_id), self._keys.chat(chat), self._keys.stream()]
        seq = await self._put(keys=keys, args=[self._dedup_ms, chat, payload, self._dedup_ms])
        return int(seq) > 0

    async def claim(self, count: int, block_ms: int) -> list[QueuedUpdate]:
        await self._ensure_group()
        deadline = time.monotonic() + block_ms / 1000
        while True:
            await self._collect_unfinished()
            ready = await self._begin_due(count)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if ready or remaining_ms <= 0:
                return ready
            block = min(remaining_ms, 50) if self._waiting else remaining_ms  # a waiting one may be due soon
            fresh: Any = await self._client.xreadgroup(self._keys.group, self._consumer, {self._keys.stream(): ">"},
                                                  count=max(count, 1), block=max(block, 1))
            for _, entries in fresh or ():
                self._remember(entries)

    async def renew(self, update: QueuedUpdate) -> None:
        await self._renew(keys=[self._keys.lease(update.chat)], args=[self._lease_token(update), self._lease_ms])

    async def complete(self, update: QueuedUpdate) -> None:
        keys = [self._keys.chat(update.chat), self._keys.lease(update.chat), self._keys.stream()]
        await self._complete(keys=keys, args=[update.seq, self._lease_token(update), self._keys.group,
                                              update.entry_id, self._dedup_ms])
        self._waiting.pop(update.entry_id, None)
        self._active.discard(update.entry_id)

    async def release(self, update: QueuedUpdate, retry_in_s: float) -> None:
        await self._release(keys=[self._keys.lease(update.chat)], args=[self._lease_token(update)])
        self._active.discard(update.entry_id)
        self._waiting[update.entry_id] = _Waiting(update, time.monotonic() + retry_in_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the stream's start: updates accepted before the first worker ever ran are read too
            await self._client.xgroup_create(self._keys.stream(), self._keys.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _collect_unfinished(self) -> None:
        """Our own unfinished entries once after a restart; other workers' stale ones now and then."""
        if not self._own_pending_read:
            mine: Any = await self._client.xreadgroup(self._keys.group, self._consumer, {self._keys.stream(): "0"},
                                                 count=10_000)
            for _, entries in mine or ():
                self._remember(entries)
            self._own_pending_read = True
        now = time.monotonic()
        if now < self._next_autoclaim:
            return
        self._next_autoclaim = now + self._claim_idle_ms / 2000
        start = "0-0"
        while True:  # XAUTOCLAIM pages through the group's pending entries
            start, entries, *_ = await self._client.xautoclaim(
                self._keys.stream(), self._keys.group, self._consumer, self._claim_idle_ms, start_id=start, count=100)
            self._remember(entries)
            if _text(start) == "0-0":
                break

    def _remember(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending: nothing to answer
                continue
            key = _text(entry_id)
            if key not in self._waiting and key not in self._active:  # never our own update twice
                values = {_text(k): _text(v) for k, v in fields.items()}
                update = QueuedUpdate(key, values["chat"], int(values["seq"]), values["update"])
                self._waiting[key] = _Waiting(update)

    async def _begin_due(self, count: int) -> list[QueuedUpdate]:
        now = time.monotonic()
        due = sorted((w.update for w in self._waiting.values() if w.not_before <= now), key=_stream_order)
        ready: list[QueuedUpdate] = []
        for update in due:
            if len(ready) >= count:
                break
            answer = _text(await self._begin(keys=[self._keys.chat(update.chat), self._keys.lease(update.chat)],
                                             args=[update.seq, self._lease_token(update), self._lease_ms]))
            if answer == "go":
                ready.append(update)
                self._waiting.pop(update.entry_id)
                self._active.add(update.entry_id)
            elif answer == "done":  # answered by another worker (or before our restart)
                await self._client.xack(self._keys.stream(), self._keys.group, update.entry_id)
                self._waiting.pop(update.entry_id)
        return ready

    def _lease_token(self, update: QueuedUpdate) -> str:
        return f"{self._token}:{update.seq}"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_order(update: QueuedUpdate) -> tuple[int, int]:
    millis, _, counter = update.entry_id.partition("-")
    return int(millis), int(counter or 0)
