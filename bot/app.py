"""The composition root: settings in, a running engine (and the web app around it) out."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio as redis
import yaml
from fastapi import FastAPI, Request

from bot.actions.demo_orders import SqliteOrderStore, create_demo_store
from bot.actions.knowledge import ShopKnowledge, money
from bot.actions.registry import FAQ_INTENTS, build_executor
from bot.actions.runner import ActionRunner, LocalActionRunner, RemoteActionRunner
from bot.channels.callbacks import CallbackDelivery
from bot.channels.frames import reply_frame
from bot.desk import HandoffDesk, shopper_topic
from bot.engine import Engine, EngineConfig
from bot.operators import LoginGuard, OperatorAccounts, OperatorSessions
from bot.router import RoutingPolicy
from bot.settings import Settings
from bot.state import ConversationStore, FileReviewLog, MemoryStore, RedisReviewLog, RedisStore, ReviewLog
from bot.state.bus import Bus, MemoryBus, RedisBus
from bot.state.desk_index import DeskIndex, MemoryDeskIndex, RedisDeskIndex
from bot.state.expiring import ExpiringValues, MemoryExpiringValues, RedisExpiringValues
from bot.state.inbox import MemoryInbox, UpdateInbox
from bot.state.keys import StoreKeys
from bot.state.redis_inbox import RedisInbox
from bot.state.seen import MemorySeenMessages, RedisSeenMessages, SeenMessages
from bot.types import Conversation, Reply, ReplyKind
from generation.safety import SafetyFilter, SafetyPolicy
from generation.safety.classifier import HarmClassifier
from generation.safety.pii import find as find_personal_data
from nlu.batching import MicroBatcher
from nlu.classifier import METADATA_FILE as CLASSIFIER_METADATA
from nlu.classifier import IntentClassifier

if TYPE_CHECKING:  # the generator's modules load torch; only open_writer imports them for real
    from bot.channels.console import Console
    from bot.channels.telegram import TelegramChannel
    from bot.channels.telegram_delivery import TelegramWorker
    from generation.writer import GroundedWriter

log = logging.getLogger(__name__)


def load_knowledge(settings: Settings) -> ShopKnowledge:
    data = settings.data
    return ShopKnowledge.load(data.shop, data.faq, data.responses, shop_name=settings.shop.name)


def load_catalog(settings: Settings) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = yaml.safe_load(settings.data.catalog.read_text(encoding="utf-8"))["products"]
    return products


def open_orders(settings: Settings, knowledge: ShopKnowledge, *, reset: bool = False,
                catalog: list[dict[str, Any]] | None = None) -> SqliteOrderStore:
    """The demo order store, created from the seed file on first use (or when `reset`)."""
    catalog = catalog if catalog is not None else load_catalog(settings)
    if reset or not settings.data.orders_db.exists():
        count = create_demo_store(settings.data.orders_db, settings.data.orders_seed,
                                  knowledge.facts["delivery_options"], date.today())
        log.info("created the demo order store %s with %d orders", settings.data.orders_db, count)
    return SqliteOrderStore(settings.data.orders_db, catalog,
                            changeable=knowledge.facts["cancellation"]["change_statuses"])


def open_store(settings: Settings) -> ConversationStore:
    """Redis when REDIS_URL is set, otherwise this process's memory."""
    state = settings.state
    if settings.secrets.redis_url:
        return RedisStore.from_url(
            settings.secrets.redis_url.reveal(), prefix=state.key_prefix, ttl_s=state.conversation_ttl_s,
            events_limit=state.events_limit, lock_ttl_ms=state.lock_ttl_ms, lock_wait_ms=state.lock_wait_ms,
            password=settings.secrets.redis_password.reveal() or None,
        )
    return MemoryStore(ttl_s=state.conversation_ttl_s, events_limit=state.events_limit,
                       lock_wait_ms=state.lock_wait_ms)


@dataclass(frozen=True)
class SmallStores:
    """Client message ids already answered, the operators' inbox, short-lived values (sessions, login
    counters) and the live-update bus."""

    seen: SeenMessages
    desk: DeskIndex
    values: ExpiringValues
    bus: Bus


@asynccontextmanager
async def open_small_stores(settings: Settings) -> AsyncIterator[SmallStores]:
    """On Redis when REDIS_URL is set (one client for the three stores, and one for pub/sub, whose
    listening connections must not time out), else in this process."""
    url, prefix, ttl = settings.secrets.redis_url.reveal(), settings.state.key_prefix, settings.state.conversation_ttl_s
    if not url:
        yield SmallStores(MemorySeenMessages(ttl), MemoryDeskIndex(), MemoryExpiringValues(), MemoryBus())
        return
    password = settings.secrets.redis_password.reveal() or None
    client = redis.Redis.from_url(url, password=password, socket_timeout=5.0, socket_connect_timeout=5.0)
    bus = RedisBus.from_url(url, prefix, password)
    try:
        yield SmallStores(RedisSeenMessages(client, StoreKeys(prefix), ttl), RedisDeskIndex(client, prefix, ttl),
                          RedisExpiringValues(client, prefix), bus)
    finally:
        await bus.aclose()
        await client.aclose()


def open_review_log(settings: Settings) -> FileReviewLog | RedisReviewLog:
    """Where unsure messages are kept for labelling: Redis when REDIS_URL is set, a file otherwise."""
    if settings.secrets.redis_url:
        client = redis.Redis.from_url(settings.secrets.redis_url.reveal(), socket_timeout=5.0,
                                      password=settings.secrets.redis_password.reveal() or None)
        return RedisReviewLog(client, StoreKeys(settings.state.key_prefix).review(), settings.nlu.review_limit,
                              ttl_s=settings.state.conversation_ttl_s * 4)
    return FileReviewLog(settings.nlu.review_file, settings.nlu.review_limit)


def open_writer(settings: Settings, knowledge: ShopKnowledge, catalog: list[dict[str, Any]]) -> GroundedWriter | None:
    """The grounded generator, if one has been trained (`shopbot train generator`); else None."""
    from generation.corpus import load_templates
    from generation.generator import METADATA_FILE, Generator, StreamingGenerator
    from generation.retrieval import KnowledgeIndex, SentenceEncoder, catalog_passages, faq_passages
    from generation.sampling import SamplingSettings
    from generation.writer import GroundedWriter

    g = settings.generation
    if not (g.model_dir / METADATA_FILE).is_file():
        log.warning("no generator in %s: open questions get the fallback reply (run `shopbot train generator`)",
                    g.model_dir)
        return None
    sampling = SamplingSettings(g.temperature, g.top_p, g.repetition_penalty, g.max_new_tokens, g.stop)
    generator = Generator.load(g.model_dir, sampling, threads=g.threads)
    faq = {key: knowledge.answer(key) for key in FAQ_INTENTS if knowledge.has(key) and
           knowledge.variables(key) <= set(knowledge.facts)}
    index = KnowledgeIndex(catalog_passages(catalog, money) + faq_passages(faq), SentenceEncoder())
    # The generator learnt its training corpus's product names: any of them in a reply is checked too.
    known = [*product_names(catalog), *load_templates(g.templates).pools["product"].values]
    return GroundedWriter(StreamingGenerator(generator, g.max_batch), index, known,
                          passages=g.passages, history_turns=g.history_turns,
                          description_candidates=g.description_candidates, min_passage_score=g.min_passage_score,
                          answer_candidates=g.answer_candidates)


def open_safety(settings: Settings, knowledge: ShopKnowledge) -> SafetyFilter:
    """The safety checkpoint: the harmful-content classifier once trained, the rule checks always."""
    s = settings.safety
    harm = None
    if (s.model_dir / CLASSIFIER_METADATA).is_file():
        harm = HarmClassifier.load(s.model_dir, threads=settings.nlu.threads)
    else:
        log.warning("no safety classifier in %s: only the rule checks run (run `shopbot train safety`)", s.model_dir)
    # The shop's own contact data (and the helplines its texts give) may always be repeated.
    texts = [p.read_text(encoding="utf-8") for p in (settings.data.shop, settings.data.faq, settings.data.responses)]
    public = tuple(sorted({t[a:b] for t in texts for _, a, b in find_personal_data(t)}))
    website = urlsplit(str(knowledge.facts["shop"].get("website", ""))).hostname
    policy = SafetyPolicy(max_chars=settings.messages.max_chars, threshold=s.threshold,
                          input_threshold=s.input_threshold,
                          allowed_hosts=tuple(h for h in (website, *s.allowed_hosts) if h), public_contacts=public)
    return SafetyFilter(policy, harm)


def product_names(catalog: list[dict[str, Any]]) -> list[str]:
    return [str(p["name"]) for p in catalog]


def open_inbox(settings: Settings, channel: str) -> UpdateInbox:
    """Where a channel's updates wait for a worker: Redis when REDIS_URL is set, else this process."""
    t = settings.telegram
    if settings.secrets.redis_url:
        return RedisInbox.from_url(settings.secrets.redis_url.reveal(), settings.state.key_prefix, channel,
                                   t.consumer or socket.gethostname(), dedup_ttl_s=t.dedup_ttl_s,
                                   lease_ms=t.lease_ms, claim_idle_ms=t.claim_idle_ms,
                                   password=settings.secrets.redis_password.reveal() or None)
    return MemoryInbox(dedup_ttl_s=t.dedup_ttl_s)


@dataclass(frozen=True)
class TelegramService:
    """The running Telegram channel: its handlers, its inbox and the workers answering from it."""

    channel: TelegramChannel
    inbox: UpdateInbox
    worker: TelegramWorker
    webhook_secret: str


@dataclass(frozen=True)
class Services:
    """What the channels need, built once per process."""

    settings: Settings
    engine: Engine
    classifier: IntentClassifier
    safety: SafetyFilter
    seen_messages: SeenMessages  # client message ids already answered (the widget resends after a drop)
    desk: HandoffDesk  # conversations handed to people, operator actions, live updates
    console: Console
    writer: GroundedWriter | None = None  # None until `shopbot train generator` has run
    telegram: TelegramService | None = None  # None unless TELEGRAM_BOT_TOKEN is set


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Load models, open the stores and the action runner; close everything on exit."""
    async with AsyncExitStack() as stack:
        knowledge = load_knowledge(settings)
        catalog = load_catalog(settings)  # read once: entity names for the classifier, SKUs for the orders
        classifier = IntentClassifier.load(settings.nlu.model_dir, products=product_names(catalog),
                                           threads=settings.nlu.threads, runtime=settings.nlu.runtime)
        # Concurrent conversations share forward passes; the engine awaits its own message's parse.
        batcher = MicroBatcher(classifier.parse_batch, max_batch=settings.nlu.max_batch,
                               max_wait=settings.nlu.batch_wait_ms / 1000, inline_batch=1)
        stack.push_async_callback(batcher.aclose)
        store = open_store(settings)
        stack.push_async_callback(store.aclose)
        small = await stack.enter_async_context(open_small_stores(settings))
        review: ReviewLog = open_review_log(settings)
        if isinstance(review, RedisReviewLog):
            stack.push_async_callback(review.aclose)
        writer = open_writer(settings, knowledge, catalog)
        if writer is not None:
            stack.push_async_callback(writer.generator.aclose)
        runner: ActionRunner
        if settings.actions.endpoint:
            remote = RemoteActionRunner(settings.actions.endpoint, settings.actions.timeout_s)
            stack.push_async_callback(remote.aclose)
            runner = remote
        else:
            runner = LocalActionRunner(build_executor(knowledge, open_orders(settings, knowledge, catalog=catalog)))
        config = EngineConfig(
            policy=RoutingPolicy(settings.nlu.confidence_threshold, settings.nlu.ambiguity_margin,
                                 generator=writer is not None),
            history_limit=settings.state.history_limit,
            max_message_chars=settings.messages.max_chars,
            max_reply_chars=settings.messages.max_chars,
            max_blocks=settings.safety.max_blocks,
            fallbacks_before_handoff=settings.console.fallbacks_before_handoff,
            unhappy_before_handoff=settings.console.unhappy_before_handoff,
        )
        safety = open_safety(settings, knowledge)
        desk = HandoffDesk(store, small.desk, small.bus, safety, knowledge.answer("handback"), writer,
                           settings.state.history_limit)
        desk.deliver_with("webchat", functools.partial(deliver_to_widget, small.bus))
        desk.deliver_with("rest", CallbackDelivery(store, settings.console.callback_hosts))
        engine = Engine(store, batcher, runner, knowledge, config, review, writer, safety, observer=desk)
        console = open_console(settings, small.values)
        yield Services(settings, engine, classifier, safety, small.seen, desk, console, writer)


def open_console(settings: Settings, values: ExpiringValues) -> Console:
    from bot.channels.console import Console

    return Console(settings, OperatorAccounts(settings.console.operators_file),
                   OperatorSessions(values, settings.console.session_ttl_s), LoginGuard(values))


async def deliver_to_widget(bus: Bus, conversation: Conversation, reply: Reply) -> None:
    """An operator's message to the shopper's open widget, wherever its socket is held."""
    route = "operator" if reply.kind is ReplyKind.HANDOFF else reply.kind.value
    await bus.publish(shopper_topic(conversation.id), reply_frame(reply, route))


@asynccontextmanager
async def open_telegram(settings: Settings, services: Services,
                        workers: int | None = None) -> AsyncIterator[TelegramService | None]:
    """The Telegram channel when TELEGRAM_BOT_TOKEN is set: handlers, inbox and `workers` answering.

    Nothing here talks to Telegram: the workers connect in the background (and keep retrying), so
    the webhook keeps accepting updates even while the Bot API cannot be reached.
    """
    from bot.channels.telegram import TelegramChannel, build_application
    from bot.channels.telegram_delivery import TelegramWorker

    token = settings.secrets.telegram_bot_token.reveal()
    if not token:
        yield None
        return
    t = settings.telegram
    application = build_application(token, t)
    channel = TelegramChannel(application, services.engine, services.engine.knowledge, t)
    channel.install()
    services.desk.deliver_with("telegram", channel.deliver, channel.show_typing)
    inbox = open_inbox(settings, "telegram")
    count = t.workers if workers is None else workers
    worker = TelegramWorker(channel, inbox, count, t.lease_ms)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop)) if count > 0 else None
    if task is not None:
        task.add_done_callback(_report_stopped)
    try:
        yield TelegramService(channel, inbox, worker, settings.secrets.telegram_webhook_secret.reveal())
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait([task], timeout=30)
        if application._initialized:  # noqa: SLF001 - shutdown() refuses an application never initialised
            await application.shutdown()
        await inbox.aclose()


def _report_stopped(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the Telegram worker stopped: %s", task.exception(), exc_info=task.exception())


def build_app(settings: Settings) -> FastAPI:
    """The ShopBot web app: REST API, the chat widget and demo shop, the Telegram webhook."""
    from bot.channels import console, rest, webchat  # channels depend on the engine, never the other way round
    from bot.channels.telegram_delivery import webhook_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Services]]:
        async with open_services(settings) as services, open_telegram(settings, services) as telegram:
            yield {"services": dataclasses.replace(services, telegram=telegram)}

    def telegram_inbox(request: Request) -> tuple[UpdateInbox, str] | None:
        telegram: TelegramService | None = request.state.services.telegram
        return None if telegram is None else (telegram.inbox, telegram.webhook_secret)

    app = FastAPI(title=f"ShopBot ({settings.shop.name})", version="0.1.0", lifespan=lifespan)
    rest.install(app, settings)
    webchat.install(app, settings)
    console.install(app)
    app.include_router(webhook_router(telegram_inbox))
    return app
