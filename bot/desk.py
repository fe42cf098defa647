"""The handoff desk: what operators do with conversations, and what they and shoppers hear live.

A conversation is owned by the bot, by the waiting queue or by one operator (`Conversation.mode`).
The engine queues it (see `Engine._hand_over`) and tells the desk; operators take it over, reply,
write notes, hand it back or resolve it here. Every change goes to the operators' inbox
(`DeskIndex`) and out on the bus; operator replies reach the shopper's channel.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bot.engine import new_reply_id
from bot.state import ConversationStore, Event
from bot.state.bus import Bus
from bot.state.desk_index import DeskIndex, DeskItem
from bot.types import Conversation, Mode, Reply, ReplyKind, Turn
from generation.safety import SafetyFilter, VerdictAction

if TYPE_CHECKING:
    from generation.writer import GroundedWriter

log = logging.getLogger(__name__)

OPERATORS = "operators"  # bus topic every console listens to
Deliver = Callable[[Conversation, Reply], Awaitable[None]]  # sends a reply to the shopper's channel
ShowTyping = Callable[[str], Awaitable[None]]  # shows "typing..." in the conversation with this id
_STATES = {Mode.PENDING_HUMAN: "waiting", Mode.HUMAN: "human", Mode.BOT: "bot", Mode.RESOLVED: "resolved"}


def shopper_topic(conversation_id: str) -> str:
    """The bus topic a shopper's open widget listens to."""
    return f"shopper:{conversation_id}"


class DeskError(Exception):
    """An operator action that cannot be done; `status` is the HTTP code the console shows."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HandoffDesk:
    def __init__(self, store: ConversationStore, index: DeskIndex, bus: Bus, safety: SafetyFilter,
                 handback_text: str, writer: GroundedWriter | None = None, history_limit: int = 50) -> None:
        self.store = store
        self.index = index
        self.bus = bus
        self.safety = safety
        self.writer = writer
        self._handback_text = handback_text
        self._history_limit = history_limit
        self._deliver: dict[str, Deliver] = {}
        self._typing: dict[str, ShowTyping] = {}

    def deliver_with(self, channel: str, deliver: Deliver, typing: ShowTyping | None = None) -> None:
        """How replies (and, if it can show one, the operator's typing) reach shoppers of `channel`."""
        self._deliver[channel] = deliver
        if typing is not None:
            self._typing[channel] = typing

    # -- what the engine tells the desk ----------------------------------------------------------------
    async def conversation_changed(self, conversation: Conversation, turns: Sequence[Turn],
                                   reason: str | None) -> None:
        """A shopper wrote in a conversation a person is involved in (or that was just queued)."""
        unread = sum(1 for t in turns if t.role == "user")
        await self._publish(conversation, reason=reason, unread=unread, turns=turns)

    # -- what operators do ------------------------------------------------------------------------------
    async def view(self, conversation_id: str) -> dict[str, Any]:
        """Transcript, handoff summary and notes; opening it marks it read."""
        conversation = await self._load(conversation_id)
        events = await self.store.events(conversation_id, 500)
        queued = [e for e in events if e.kind == "queued"]
        item = await self.index.get(conversation_id)
        if item is not None and item.unread:
            await self.index.put(dataclasses.replace(item, unread=0))
        # What the shopper's channel said about them last: page, verified customer id, the shop's context.
        shopper = next((dict(e.data["metadata"]) for e in reversed(events) if e.kind == "user"
                        and isinstance(e.data.get("metadata"), dict)), {})
        return {
            "id": conversation.id, "channel": conversation.channel, "state": _STATES[conversation.mode],
            "operator": conversation.operator,
            "summary": {**queued[-1].data["summary"], "shopper": shopper} if queued else None,
            "transcript": [t.to_json() for t in conversation.history],
            "notes": [dict(e.data) for e in events if e.kind == "note"],
        }

    async def take(self, conversation_id: str, operator: str) -> dict[str, Any]:
        async with self.store.lock(conversation_id):
            conversation = self._not_someone_elses(await self._load(conversation_id), operator)
            taken = dataclasses.replace(conversation, mode=Mode.HUMAN, operator=operator)
            await self.store.save(taken, [Event("taken", time.time(), {"operator": operator})])
        await self._publish(taken)
        return await self.view(conversation_id)

    async def reply(self, conversation_id: str, operator: str, text: str) -> dict[str, Any]:
        """An operator's message: checked like every reply, kept in the transcript, sent to the shopper."""
        verdict = self.safety.check_output(text, authored=True)
        if verdict.action is VerdictAction.BLOCK or not verdict.text.strip():
            raise DeskError(422, "this reply was not sent: " + ("; ".join(verdict.reasons) or "it is empty"))
        async with self.store.lock(conversation_id):
            conversation = self._owned(await self._load(conversation_id), operator)
            turn = Turn("operator", verdict.text, time.time(), route="operator", id=new_reply_id())
            conversation = conversation.with_turns([turn], self._history_limit)
            await self.store.save(conversation, [Event("operator_reply", turn.at, {"operator": operator,
                                                                                  "text": turn.text})])
        await self._send(conversation, Reply(turn.text, kind=ReplyKind.HANDOFF, id=turn.id or ""))
        await self._publish(conversation, turns=[turn], operator=operator)
        return {"turn": {**turn.to_json(), "operator": operator}}

    async def note(self, conversation_id: str, operator: str, text: str) -> dict[str, Any]:
        """A private note: other operators see it, the shopper never does."""
        at = time.time()
        note = {"operator": operator, "text": text.strip(), "at": at}
        if not note["text"]:
            raise DeskError(422, "a note needs some text")
        async with self.store.lock(conversation_id):
            conversation = await self._load(conversation_id)
            await self.store.save(conversation, [Event("note", at, note)])
        return {"note": note}

    async def draft(self, conversation_id: str) -> str:
        """Agent assist: the generator's reply to the conversation, for the operator to edit."""
        if self.writer is None:
            raise DeskError(503, "no generator is trained: run `shopbot train generator`")
        conversation = await self._load(conversation_id)
        history = [("bot" if t.role == "operator" else t.role, t.text) for t in conversation.history]
        while history and history[-1][0] != "user":  # answer the shopper's latest message
            history.pop()
        if not history:
            raise DeskError(422, "the shopper has not written anything to answer yet")
        try:
            written = await self.writer.draft(history)
        except Exception as exc:  # the operator writes the reply themselves
            log.exception("conversation %s: the generator failed on a draft", conversation_id)
            raise DeskError(502, f"the generator failed: {exc}") from exc
        return written.text

    async def hand_back(self, conversation_id: str, operator: str, note: str | None) -> dict[str, Any]:
        """The bot answers again; the shopper is told so."""
        async with self.store.lock(conversation_id):
            conversation = self._owned(await self._load(conversation_id), operator)
            back = dataclasses.replace(conversation, mode=Mode.BOT, operator=None)
            events = [Event("handed_back", time.time(), {"operator": operator})]
            if note and note.strip():
                events.append(Event("note", time.time(), {"operator": operator, "text": note.strip(),
                                                          "at": time.time()}))
            await self.store.save(back, events)
        await self._send(back, Reply(self._handback_text, kind=ReplyKind.NOTICE, id=new_reply_id()))
        await self._publish(back)
        return await self.view(conversation_id)

    async def resolve(self, conversation_id: str, operator: str) -> dict[str, Any]:
        async with self.store.lock(conversation_id):
            conversation = self._not_someone_elses(await self._load(conversation_id), operator)
            resolved = dataclasses.replace(conversation, mode=Mode.RESOLVED, operator=None)
            await self.store.save(resolved, [Event("resolved", time.time(), {"operator": operator})])
        await self._publish(resolved)
        return await self.view(conversation_id)

    async def operator_typing(self, conversation_id: str) -> None:
        await self.bus.publish(shopper_topic(conversation_id), {"type": "typing", "on": True, "who": "operator"})
        item = await self.index.get(conversation_id)
        show = self._typing.get(item.channel) if item is not None else None
        if show is not None:
            try:
                await show(conversation_id)
            except Exception as exc:  # cosmetic: never worth an error for the operator
                log.debug("conversation %s: typing not shown: %s", conversation_id, exc)

    async def shopper_typing(self, conversation_id: str) -> None:
        item = await self.index.get(conversation_id)
        if item is not None and item.state in ("waiting", "human"):
            await self.bus.publish(OPERATORS, {"type": "typing", "conversation_id": conversation_id,
                                               "who": "shopper"})

    # -- plumbing -----------------------------------------------------------------------------------------
    async def _load(self, conversation_id: str) -> Conversation:
        conversation = await self.store.load(conversation_id)
        if conversation is None:
            raise DeskError(404, f"no conversation '{conversation_id}'")
        return conversation

    @staticmethod
    def _not_someone_elses(conversation: Conversation, operator: str) -> Conversation:
        if conversation.mode is Mode.HUMAN and conversation.operator not in (None, operator):
            raise DeskError(409, f"already taken by {conversation.operator}")
        return conversation

    @staticmethod
    def _owned(conversation: Conversation, operator: str) -> Conversation:
        if conversation.mode is not Mode.HUMAN or conversation.operator != operator:
            raise DeskError(409, "take the conversation over first" if conversation.operator is None
                            else f"{conversation.operator} is answering this conversation")
        return conversation

    async def _send(self, conversation: Conversation, reply: Reply) -> None:
        deliver = self._deliver.get(conversation.channel)
        if deliver is None:  # REST: the shopper's app reads the transcript
            return
        try:
            await deliver(conversation, reply)
        except Exception as exc:  # kept in the transcript either way; the operator is told
            log.exception("conversation %s: could not deliver an operator message", conversation.id)
            raise DeskError(502, f"saved, but not delivered to {conversation.channel}: {exc}") from exc

    async def _publish(self, conversation: Conversation, *, reason: str | None = None, unread: int = 0,
                       turns: Sequence[Turn] = (), operator: str | None = None) -> None:
        """Update the inbox item and tell every console (and, for operator turns, the shopper's widget)."""
        before = await self.index.get(conversation.id)
        state = _STATES[conversation.mode]
        last = conversation.history[-1] if conversation.history else None
        waiting_since = None
        if state == "waiting":  # since it was queued, not since the latest message
            waiting_since = before.waiting_since if before and before.state == "waiting" else time.time()
        elif state == "human" and before is not None:
            waiting_since = before.waiting_since
        item = DeskItem(
            id=conversation.id, channel=conversation.channel, state=state, operator=conversation.operator,
            reason=reason or (before.reason if before else ""),
            last_message={"role": last.role, "text": last.text, "at": last.at} if last else None,
            last_activity=time.time(), waiting_since=waiting_since,
            unread=(before.unread if before else 0) + unread,
        )
        await self.index.put(item)
        await self.bus.publish(OPERATORS, {"type": "conversation", "conversation": item.to_json()})
        for turn in turns:
            shown = {**turn.to_json(), **({"operator": operator} if turn.role == "operator" else {})}
            await self.bus.publish(OPERATORS, {"type": "message", "conversation_id": conversation.id, "turn": shown})
