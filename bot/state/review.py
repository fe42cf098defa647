"""Messages the bot was unsure about, kept (personal data redacted) so people can label them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as redis


@dataclass(frozen=True)
class ReviewItem:
    """One message worth a human look: why, and what the model guessed."""

    text: str  # already redacted
    reason: str  # fallback | out_of_scope | ambiguous | handoff
    intent: str
    confidence: float
    at: float
    channel: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReviewItem:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class ReviewLog(Protocol):
    async def add(self, item: ReviewItem) -> None: ...

    async def items(self, limit: int) -> list[ReviewItem]: ...


class FileReviewLog:
    """JSON lines in a file: shared by every process on one machine (the demo, `shopbot nlu review`)."""

    def __init__(self, path: Path, max_items: int) -> None:
        self.path = path
        self.max_items = max_items
        self._lock = asyncio.Lock()

    async def add(self, item: ReviewItem) -> None:
        async with self._lock:
            await asyncio.to_thread(self._append, json.dumps(item.to_json(), ensure_ascii=False))

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")

    async def items(self, limit: int) -> list[ReviewItem]:
        if not self.path.exists():
            return []
        lines = (await asyncio.to_thread(self.path.read_text, "utf-8")).splitlines()
        return [ReviewItem.from_json(json.loads(line)) for line in lines[-min(limit, self.max_items):] if line]


class RedisReviewLog:
    """A capped Redis list shared by every bot worker; entries expire with the list's TTL."""

    def __init__(self, client: redis.Redis, key: str, max_items: int, ttl_s: int) -> None:
        self._client = client
        self._key = key
        self._max_items = max_items
        self._ttl_s = ttl_s

    async def add(self, item: ReviewItem) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(self._key, json.dumps(item.to_json(), ensure_ascii=False))
            pipe.ltrim(self._key, -self._max_items, -1)
            pipe.expire(self._key, self._ttl_s)
            await pipe.execute()

    async def items(self, limit: int) -> list[ReviewItem]:
        raw = await self._client.lrange(self._key, -limit, -1)
        return [ReviewItem.from_json(json.loads(r)) for r in raw]

    async def aclose(self) -> None:
        await self._client.aclose()


def to_rasa_yaml(items: list[ReviewItem]) -> str:
    """Rasa 3 NLU YAML grouped by the model's guess, ready to correct and merge into data/nlu.yml."""
    groups: dict[str, list[ReviewItem]] = {}
    for item in items:
        label = "out_of_scope" if item.reason == "out_of_scope" else item.intent
        groups.setdefault(label, [])
        if item.text not in (i.text for i in groups[label]):
            groups[label].append(item)
    lines = ['version: "3.1"', "# Messages ShopBot was unsure about, grouped by its best guess.",
             "# Check each intent, move lines where they belong, then merge into data/nlu.yml.", "nlu:"]
    for label in sorted(groups):
        reasons = sorted({i.reason for i in groups[label]})
        lines += [f"# {len(groups[label])} message(s), kept because: {', '.join(reasons)}",
                  f"- intent: {label}", "  examples: |"]
        lines += [f"    - {' '.join(i.text.split())}" for i in groups[label]]
    return "\n".join(lines) + "\n"
