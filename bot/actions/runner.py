"""Running an action: in-process through rasa-sdk's executor, or on an action server over Rasa's webhook."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from rasa_sdk.executor import ActionExecutor

from bot.actions.base import SLOTS
from bot.actions.registry import CONVERSATION_INTENTS, GENERATOR_INTENTS, SUPPORT_INTENTS
from bot.types import Button, Conversation
from nlu.parse import Parse

log = logging.getLogger(__name__)

ENTITIES = ("order_id", "email", "phone", "invoice_number", "product", "size", "colour")
DOMAIN: dict[str, Any] = {
    "version": "3.1",
    "intents": sorted(SUPPORT_INTENTS | CONVERSATION_INTENTS | GENERATOR_INTENTS),
    "entities": list(ENTITIES),
    "slots": {name: {"type": "any", "mappings": [{"type": "custom"}]} for name in SLOTS},
    "responses": {},
    "actions": [],
    "forms": {},
}


class ActionFailed(Exception):
    """The action could not be run; carries the action name."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"action '{action}' failed: {reason}")
        self.action = action


@dataclass(frozen=True)
class ActionMessage:
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class ActionResult:
    """What an action said, and the slot values it set (None removes a slot)."""

    messages: tuple[ActionMessage, ...]
    slots: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_rasa(cls, payload: Mapping[str, Any]) -> ActionResult:
        slots = {e["name"]: e.get("value") for e in payload.get("events", []) if e.get("event") == "slot"}
        messages = tuple(
            ActionMessage(
                text=str(r.get("text") or ""),
                buttons=tuple(Button(str(b["title"]), str(b["payload"])) for b in r.get("buttons") or []),
            )
            for r in payload.get("responses", [])
            if r.get("text")
        )
        return cls(messages=messages, slots=slots, events=tuple(payload.get("events", [])))


class ActionRunner(Protocol):
    async def run(self, action: str, conversation: Conversation, parse: Parse, channel: str) -> ActionResult: ...


def action_call(action: str, conversation: Conversation, parse: Parse, channel: str) -> dict[str, Any]:
    """The request body Rasa sends to an action server's /webhook."""
    latest = parse.to_json()  # Rasa's latest_message: text, intent, intent_ranking, entities
    tracker = {
        "sender_id": conversation.id,
        "slots": {**{name: None for name in SLOTS}, **conversation.slots},
        "latest_message": latest,
        "events": [],
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": None,
        "latest_input_channel": channel,
    }
    return {"next_action": action, "sender_id": conversation.id, "tracker": tracker, "domain": DOMAIN,
            "version": "3.1.0"}


class LocalActionRunner:
    """Runs actions in this process through rasa-sdk's own executor."""

    def __init__(self, executor: ActionExecutor) -> None:
        self._executor = executor

    async def run(self, action: str, conversation: Conversation, parse: Parse, channel: str) -> ActionResult:
        try:
            result = await self._executor.run(action_call(action, conversation, parse, channel))
        except Exception as exc:  # a bug in one action must cost one polite apology, not the service
            log.exception("action %s failed in conversation %s", action, conversation.id)
            raise ActionFailed(action, repr(exc)) from exc
        if result is None:
            raise ActionFailed(action, "the executor returned nothing")
        return ActionResult.from_rasa(result.model_dump())


class RemoteActionRunner:
    """Calls a rasa-sdk action server (`shopbot actions`, or any Rasa-compatible one)."""

    def __init__(self, endpoint: str, timeout_s: float, client: httpx.AsyncClient | None = None) -> None:
        self._endpoint = endpoint
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def run(self, action: str, conversation: Conversation, parse: Parse, channel: str) -> ActionResult:
        try:
            response = await self._client.post(self._endpoint, json=action_call(action, conversation, parse, channel))
        except httpx.HTTPError as exc:
            raise ActionFailed(action, f"action server unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise ActionFailed(action, f"action server answered {response.status_code}: {response.text[:200]}")
        return ActionResult.from_rasa(response.json())

    async def aclose(self) -> None:
        await self._client.aclose()

