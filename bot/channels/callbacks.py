"""Operator replies for REST conversations, posted to the callback URL the client gave.

A REST client that wants operators' replies pushed (rather than reading the transcript) sends
`metadata.callback_url` with its messages; only hosts in `console.callback_hosts` are accepted, so
the bot never posts to places an anonymous caller chose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from bot.state import ConversationStore
from bot.types import Conversation, Reply

log = logging.getLogger(__name__)


def callback_allowed(url: object, hosts: Sequence[str]) -> bool:
    if not isinstance(url, str) or len(url) > 2_000:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname is not None and parts.hostname in hosts


class CallbackDelivery:
    """Posts `{"conversation_id", "reply"}` to the conversation's latest callback URL, retrying twice."""

    def __init__(self, store: ConversationStore, hosts: Sequence[str], timeout_s: float = 5.0) -> None:
        self.store = store
        self.hosts = tuple(hosts)
        self.timeout_s = timeout_s

    async def __call__(self, conversation: Conversation, reply: Reply) -> None:
        url = await self._callback_url(conversation.id)
        if url is None:
            return  # the client reads the transcript (GET /api/v1/conversations/{id})
        body = {"conversation_id": conversation.id, "reply": {**reply.to_json(), "route": "operator"}}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for attempt in range(3):
                try:
                    response = await client.post(url, json=body)
                    response.raise_for_status()
                    return
                except httpx.HTTPError as exc:
                    if attempt == 2:
                        raise RuntimeError(f"callback {url} failed: {exc}") from exc
                    await asyncio.sleep(0.5 * 2**attempt)

    async def _callback_url(self, conversation_id: str) -> str | None:
        for event in reversed(await self.store.events(conversation_id, 200)):
            url = (event.data.get("metadata") or {}).get("callback_url") if event.kind == "user" else None
            if url is not None:
                return url if callback_allowed(url, self.hosts) else None
        return None
