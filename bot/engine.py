"""One message in, replies out: guard, lock, load, parse, route, act, check, save."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.actions.base import AWAITING_ACTION, HANDOFF_REQUESTED, REQUESTED_SLOT
from bot.actions.knowledge import ShopKnowledge
from bot.actions.registry import CONVERSATION_INTENTS, SUPPORT_INTENTS
from bot.actions.runner import ActionFailed, ActionResult, ActionRunner
from bot.handoff import handoff_reason, summarize, watch
from bot.mood import is_negative
from bot.payloads import parse_payload
from bot.router import HANDOFF_ACTION, Route, RouteKind, RoutingPolicy, route, route_name
from bot.state import ConversationStore, Event, ReviewItem, ReviewLog
from bot.transcript import record, verdict_event
from bot.types import Button, Conversation, InboundMessage, Mode, Reply, ReplyKind, Turn
from generation.safety import SafetyFilter, SafetyPolicy, Verdict, VerdictAction, clean_text
from generation.safety.pii import redact
from generation.safety.verdict import HANDOFF_CATEGORIES
from nlu.parse import IntentScore, Parse

if TYPE_CHECKING:  # the generator's modules load torch; the engine runs without one
    from generation.writer import GroundedWriter

log = logging.getLogger(__name__)
OnDraft = Callable[[str, str], Awaitable[None]]  # (reply id, text so far): a reply shown while it is written
ShowDraft = Callable[[str], Awaitable[None]]  # the same for one reply, as the writer calls it


class IntentParser(Protocol):
    """The classifier as the engine sees it: awaitable, so concurrent messages can share a batch."""

    async def parse(self, text: str) -> Parse: ...


class HandoffObserver(Protocol):
    """Who hears about conversations that need or have a person (the operator console)."""

    async def conversation_changed(self, conversation: Conversation, turns: Sequence[Turn],
                                   reason: str | None) -> None: ...


class InputRejected(ValueError):
    """The message cannot be processed as sent; `reply` is the polite answer for the shopper."""

    def __init__(self, reason: str, reply: str) -> None:
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True)
class EngineConfig:
    policy: RoutingPolicy = RoutingPolicy()
    history_limit: int = 50
    max_message_chars: int = 4_000
    max_reply_chars: int = 4_000
    max_blocks: int = 2  # blocked replies in one conversation before it is handed to a person
    fallbacks_before_handoff: int = 3  # messages in a row the bot could not answer before a person takes over
    unhappy_before_handoff: int = 3  # clearly unhappy messages in a row before a person takes over


class Engine:
    """The conversation engine: channels call `handle`; it never knows which channel called."""

    def __init__(self, store: ConversationStore, parser: IntentParser, actions: ActionRunner,
                 knowledge: ShopKnowledge, config: EngineConfig, review: ReviewLog | None = None,
                 writer: GroundedWriter | None = None, safety: SafetyFilter | None = None,
                 observer: HandoffObserver | None = None) -> None:
        self.store = store
        self.observer = observer
        self.safety = safety or SafetyFilter(SafetyPolicy(max_chars=config.max_reply_chars))
        self.review = review
        self.writer = writer
        self.parser = parser
        self.actions = actions
        self.knowledge = knowledge
        self.config = config

    def check_text(self, text: str) -> str:
        """The cleaned text, or InputRejected when it is empty or too long."""
        cleaned = clean_text(text)
        if not cleaned:
            raise InputRejected("text is empty", self.knowledge.answer("message_empty"))
        if len(cleaned) > self.config.max_message_chars:
            reply = self.knowledge.answer("message_too_long", max_chars=self.config.max_message_chars)
            raise InputRejected(f"text is longer than {self.config.max_message_chars} characters", reply)
        return cleaned

    async def parse(self, text: str) -> Parse:
        """A button payload is read directly; anything else goes to the intent classifier."""
        payload = parse_payload(text, SUPPORT_INTENTS | CONVERSATION_INTENTS)
        if payload is not None:
            return payload
        return await self.parser.parse(text)

    async def explain(self, text: str) -> tuple[Parse, Route]:
        """What the bot would make of `text` in a fresh conversation; nothing is stored."""
        parse = await self.parse(self.check_text(text))
        return parse, route(Conversation(id="parse-only"), parse, self.config.policy)

    async def handle(self, message: InboundMessage, on_draft: OnDraft | None = None) -> list[Reply]:
        """Answer one shopper message; the conversation is locked while it is handled.

        A channel that can show a reply while it is written passes `on_draft`: it then receives
        the generator's reply as it grows, each draft checked by the safety filter first (drafts
        stop at the first one it would not send as is). The returned replies are the final word;
        the first of them carries the drafts' reply id (it replaces the draft, whatever it says).
        """
        text = self.check_text(message.text)
        guard = self.safety.check_input(text)
        first_id = new_reply_id()
        async with self.store.lock(message.conversation_id):
            conversation = await self.store.load(message.conversation_id) or Conversation(
                id=message.conversation_id, channel=message.channel
            )
            known = [text, *(t.text for t in conversation.history if t.role == "user"),
                     *(v for v in conversation.slots.values() if isinstance(v, str))]
            parse, decision, replies, slots, events = await self._answer(
                message, text, guard, conversation, None if on_draft is None else self._checked_drafts(
                    on_draft, first_id, known))
            replies, slots, fallbacks = self._watch_for_handoff(conversation, decision, replies, slots, text)
            replies, checked = self._check(replies, known, int(conversation.slots.get(BLOCKED_REPLIES) or 0))
            replies = [dataclasses.replace(r, id=first_id if i == 0 else new_reply_id()) for i, r in enumerate(replies)]
            reason = handoff_reason({**slots, **checked.slots}, [*events, *checked.events]) or fallbacks
            turns, logged = record(message, text, guard, parse, decision, replies, [*events, *checked.events])
            conversation = conversation.with_slots({**slots, **checked.slots, HANDOFF_REQUESTED: None})
            conversation = conversation.with_turns(turns, self.config.history_limit)
            conversation, logged = await self._hand_over(conversation, reason, logged, turns[0].at)
            await self.store.save(conversation, logged)
        if self.observer is not None and (conversation.mode is not Mode.BOT or reason):
            await self._tell_observer(conversation, turns, reason)
        return replies

    async def _answer(self, message: InboundMessage, text: str, guard: Verdict, conversation: Conversation,
                      drafts: ShowDraft | None) -> tuple[Parse, Route, list[Reply], dict[str, object], list[Event]]:
        """The guard's answer to an abusive or hostile message (never echoed), else the route's.

        One exception: a flagged message the classifier reads as a plain request for a person gets
        one (no injection, no threat or self-harm, which the guard hands over itself). The harm
        classifier can misread a short message ("I want a human" once scored 0.99 sexual), and for
        a shopper who is abusive and asks for a person, a person is the calm answer too.
        """
        guarded = guard.action is VerdictAction.BLOCK and conversation.mode is Mode.BOT
        if guarded and ("injection" in guard.categories or HANDOFF_CATEGORIES & guard.categories.keys()):
            return self._guarded_answer(text, guard)  # never parsed: injections and crises
        parse = await self.parse(text)
        decision = route(conversation, parse, self.config.policy)
        if guarded and decision.action != HANDOFF_ACTION:
            return self._guarded_answer(text, guard)
        await self._keep_for_review(text, parse, decision, message.channel)
        return parse, decision, *await self._respond(decision, conversation, parse, message.channel, drafts)

    def _guarded_answer(self, text: str, guard: Verdict) -> tuple[Parse, Route, list[Reply], dict[str, object],
                                                                  list[Event]]:
        parse = Parse(text=text, intent=IntentScore("guarded", 1.0), ranking=(IntentScore("guarded", 1.0),))
        decision = Route(RouteKind.FALLBACK, reason="safety guard: " + ", ".join(guard.categories))
        return parse, decision, *self._guarded(guard)

    async def _hand_over(self, conversation: Conversation, reason: str | None, events: list[Event],
                         now: float) -> tuple[Conversation, list[Event]]:
        """Queue the conversation for a person when there is a reason; a resolved one is the bot's again."""
        if reason and conversation.mode in (Mode.BOT, Mode.RESOLVED):
            earlier = await self.store.events(conversation.id, 200)
            summary = summarize(conversation, [*earlier, *events], reason, now)
            queued = dataclasses.replace(conversation, mode=Mode.PENDING_HUMAN, operator=None)
            return queued, [*events, Event("queued", now, {"reason": reason, "summary": summary})]
        if conversation.mode is Mode.RESOLVED:
            return dataclasses.replace(conversation, mode=Mode.BOT), events
        return conversation, events

    async def _tell_observer(self, conversation: Conversation, turns: list[Turn], reason: str | None) -> None:
        assert self.observer is not None
        try:
            await self.observer.conversation_changed(conversation, turns, reason)
        except Exception:  # operators miss a live update; the shopper's message is stored all the same
            log.exception("conversation %s: could not notify the operators", conversation.id)

    def _watch_for_handoff(self, conversation: Conversation, decision: Route, replies: list[Reply],
                         slots: dict[str, object], text: str) -> tuple[list[Reply], dict[str, object], str | None]:
        """Repeated fallbacks or unhappy messages end in a handoff (see `bot.handoff.watch`)."""
        failed = decision.kind is RouteKind.FALLBACK or any(r.kind is ReplyKind.FALLBACK for r in replies)
        limits = (self.config.fallbacks_before_handoff, self.config.unhappy_before_handoff)
        turn = watch(conversation, failed, is_negative(text), limits)
        slots = {**slots, **turn.slots}
        if turn.notice is None:
            return replies, slots, None
        return [Reply(self.knowledge.answer(turn.notice), kind=ReplyKind.HANDOFF)], slots, turn.reason

    async def feedback(self, conversation_id: str, reply_id: str, value: str) -> bool:
        """Keep a shopper's thumbs up or down on one reply, with the route that produced it.

        False when the conversation has no such reply (expired, or an id the shopper made up).
        """
        if value not in ("up", "down"):
            raise ValueError(f"feedback is 'up' or 'down', got {value!r}")
        async with self.store.lock(conversation_id):
            conversation = await self.store.load(conversation_id)
            turns = conversation.history if conversation is not None else ()
            turn = next((t for t in turns if t.id == reply_id and t.role != "user"), None)
            if conversation is None or turn is None:
                return False
            data = {"reply": reply_id, "value": value, "route": turn.route or turn.role, "role": turn.role}
            await self.store.save(conversation, [Event("feedback", time.time(), data)])
        return True

    def _guarded(self, guard: Verdict) -> tuple[list[Reply], dict[str, object], list[Event]]:
        """The guard's own answer: a handoff for threats and self-harm, a calm reply otherwise."""
        if HANDOFF_CATEGORIES & guard.categories.keys():
            key = "safety_self_harm" if "self_harm" in guard.categories else "safety_threat"
            reason = "self-harm" if "self_harm" in guard.categories else "threat"
            return ([Reply(self.knowledge.answer(key), kind=ReplyKind.FALLBACK)], _forget_question(),
                    [Event("handoff", time.time(), {"reason": reason, "categories": dict(guard.categories)})])
        key = "safety_injection" if set(guard.categories) == {"injection"} else "safety_abuse"
        return [Reply(self.knowledge.answer(key), kind=ReplyKind.FALLBACK)], _forget_question(), []

    def _checked_drafts(self, on_draft: OnDraft, reply_id: str, known: list[str]) -> ShowDraft:
        """`on_draft` behind the safety filter: a draft is shown only if it would be sent as is."""
        stopped = False

        async def show(draft: str) -> None:
            nonlocal stopped
            if stopped:
                return
            if self.safety.check_output(draft, known).action is not VerdictAction.ALLOW:
                stopped = True
                return
            try:
                await on_draft(reply_id, draft)
            except Exception:  # a draft that could not be shown costs nothing: the reply still comes
                log.warning("a draft could not be shown", exc_info=True)
                stopped = True

        return show

    async def _respond(self, decision: Route, conversation: Conversation, parse: Parse, channel: str,
                       on_draft: ShowDraft | None = None) -> tuple[list[Reply], dict[str, object], list[Event]]:
        if decision.kind is RouteKind.SILENT:
            return [], {}, []
        if decision.kind is RouteKind.GENERATOR and self.writer is not None:
            return await self._generate(decision, conversation, parse, on_draft)
        if decision.kind is not RouteKind.ACTION or decision.action is None:
            return [self._offer(decision)], _forget_question(), []
        try:
            result = await self.actions.run(decision.action, conversation, parse, channel)
        except ActionFailed as exc:
            log.error("conversation %s: %s", conversation.id, exc)
            reply = Reply(self.knowledge.answer("action_failed"), kind=ReplyKind.FALLBACK)
            return [reply], {}, [Event("error", time.time(), {"action": exc.action, "error": str(exc)})]
        return _replies(result), _slot_changes(result), [
            Event("action", time.time(), {"name": decision.action, "slots": dict(result.slots)})
        ]

    async def _generate(self, decision: Route, conversation: Conversation, parse: Parse,
                        on_draft: ShowDraft | None) -> tuple[list[Reply], dict[str, object], list[Event]]:
        """A grounded reply from the generator; an ungrounded or failed one becomes the fallback."""
        assert self.writer is not None
        history = [(t.role, t.text) for t in conversation.history] + [("user", parse.text)]
        try:
            written = await self.writer.answer(history, on_draft)
        except Exception as exc:  # a broken generator costs a fallback, not the conversation
            log.exception("conversation %s: the generator failed", conversation.id)
            return [self._offer(decision)], _forget_question(), [Event("error", time.time(), {"generator": str(exc)})]
        event = Event("generation", time.time(), {
            "text": written.text, "grounded": written.grounded, "quoted": written.quoted,
            "passages": [p.source for p in written.passages],
            "unsupported": [f"{f.kind}: {f.text}" for f in written.unsupported],
        })
        if not written.grounded:
            return [self._offer(decision)], _forget_question(), [event]
        return [Reply(written.text, kind=ReplyKind.GENERATOR)], _forget_question(), [event]

    async def _keep_for_review(self, text: str, parse: Parse, decision: Route, channel: str) -> None:
        """Fallbacks, out-of-scope, ambiguous and handoff messages go to the NLU review log, redacted."""
        reason = review_reason(parse, decision)
        if self.review is None or reason is None:
            return
        item = ReviewItem(redact(text), reason, parse.intent.name, round(parse.intent.confidence, 4),
                          time.time(), channel)
        try:
            await self.review.add(item)
        except Exception:  # the shopper's answer matters more than the review log
            log.exception("could not keep a message for NLU review")

    def _offer(self, decision: Route) -> Reply:
        """Fallback or clarification: say so and offer the likeliest intents as buttons."""
        key, kind = ("clarify", ReplyKind.CLARIFY) if decision.kind is RouteKind.CLARIFY else (
            "fallback", ReplyKind.FALLBACK)
        buttons = [Button(self.knowledge.answer(f"title_{i}"), f"/{i}") for i in decision.options
                   if self.knowledge.has(f"title_{i}")]
        if not any(b.payload == "/contact_human_agent" for b in buttons):
            buttons.append(Button(self.knowledge.answer("title_contact_human_agent"), "/contact_human_agent"))
        return Reply(self.knowledge.answer(key), tuple(buttons), kind)

    def _check(self, replies: list[Reply], known: list[str], blocked_before: int) -> tuple[list[Reply], _Checked]:
        """The mandatory safety checkpoint: every reply passes it before it is sent.

        A blocked reply is replaced by a safe one with topic buttons; after `max_blocks` blocked
        replies in one conversation the shopper is offered a person instead.
        """
        checked: list[Reply] = []
        events: list[Event] = []
        blocked = blocked_before
        for reply in replies:
            authored = reply.kind is not ReplyKind.GENERATOR  # the shop's templates state its policy
            verdict = self.safety.check_output(reply.text, known, authored)
            if verdict.action is not VerdictAction.ALLOW:
                events.append(verdict_event("output", verdict))
            if verdict.action is not VerdictAction.BLOCK:
                checked.append(Reply(verdict.text, reply.buttons, reply.kind))
                continue
            blocked += 1
            if blocked >= self.config.max_blocks:
                replacement = Reply(self.knowledge.answer("handoff_blocked"), kind=ReplyKind.HANDOFF)
                events.append(Event("handoff", time.time(),
                                    {"reason": f"{blocked} replies blocked by the safety filter"}))
            else:
                buttons = self._offer(Route(RouteKind.FALLBACK)).buttons
                replacement = Reply(self.knowledge.answer("safety_blocked"), buttons, ReplyKind.FALLBACK)
            second = self.safety.check_output(replacement.text, known, authored=True)  # the shop's words pass it too
            if second.action is not VerdictAction.BLOCK:
                checked.append(Reply(second.text, replacement.buttons, replacement.kind))
        slots: dict[str, object] = {BLOCKED_REPLIES: blocked} if blocked != blocked_before else {}
        return checked, _Checked(slots, events)


@dataclass(frozen=True)
class _Checked:
    slots: dict[str, object]
    events: list[Event]


BLOCKED_REPLIES = "safety_blocked_replies"  # an internal slot: how many replies the filter blocked


def new_reply_id() -> str:
    return uuid.uuid4().hex[:16]


def review_reason(parse: Parse, decision: Route) -> str | None:
    """Why a message deserves a human look, or None."""
    if parse.out_of_scope:
        return "out_of_scope"
    if decision.kind in (RouteKind.FALLBACK, RouteKind.GENERATOR):
        return "fallback"
    if decision.kind is RouteKind.CLARIFY:
        return "ambiguous"
    return "handoff" if route_name(decision) == "handoff" and decision.kind is RouteKind.ACTION else None


def _forget_question() -> dict[str, object]:
    return {REQUESTED_SLOT: None, AWAITING_ACTION: None}


def _slot_changes(result: ActionResult) -> dict[str, object]:
    """The action's slot events; a question it did not ask again is forgotten."""
    changes = dict(result.slots)
    if REQUESTED_SLOT not in changes:
        changes.update(_forget_question())
    return changes


def _replies(result: ActionResult) -> list[Reply]:
    return [Reply(m.text, m.buttons, ReplyKind.ACTION) for m in result.messages]
