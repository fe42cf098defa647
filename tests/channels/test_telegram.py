"""The Telegram channel against a fake Bot API server: the real python-telegram-bot, the real engine
and classifier, the real Redis (or the in-memory store), updates by webhook and by long polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bot.app import build_app, open_services, open_telegram
from bot.channels.telegram_delivery import SECRET_HEADER, poll, webhook_router
from bot.settings import Settings
from bot.state.inbox import MemoryInbox
from bot.types import Reply
from tests.conftest import make_settings, redis_url
from tests.fakes.telegram_api import FakeTelegram, SentMessage
from tests.fakes.telegram_updates import UpdateFactory

SECRET = "webhook-secret_for-tests"


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def updates(tg: FakeTelegram) -> UpdateFactory:
    return UpdateFactory(tg.bot_username, tg.bot_id)


def telegram_settings(tmp_path: Path, model_dir: Path, tg: FakeTelegram, prefix: str | None, **env: str) -> Settings:
    """Settings for the fake Bot API; Redis under `prefix`, or the in-memory store when None."""
    values = {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
              "TELEGRAM_WEBHOOK_SECRET": SECRET, "SHOPBOT_TELEGRAM__TYPING_INTERVAL_S": "30", **env}
    if prefix is not None:
        values |= {"REDIS_URL": redis_url(), "SHOPBOT_STATE__KEY_PREFIX": prefix}
    return make_settings(tmp_path, model_dir, **values)


@pytest.fixture(params=["redis", "memory"])
def webhook(request: pytest.FixtureRequest, tmp_path: Path, intent_model_dir: Path, tg: FakeTelegram,
            redis_prefix: str) -> Iterator[TestClient]:
    """The web app with the Telegram webhook, its workers answering in the same process."""
    prefix = redis_prefix if request.param == "redis" else None
    with TestClient(build_app(telegram_settings(tmp_path, intent_model_dir, tg, prefix))) as client:
        yield client


def post(client: TestClient, update: dict, secret: str | None = SECRET) -> dict:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    response = client.post("/telegram/webhook", json=update, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def texts(messages: list[SentMessage]) -> list[str]:
    return [m.text for m in messages]


def test_a_conversation_through_the_webhook(webhook: TestClient, tg: FakeTelegram, updates: UpdateFactory) -> None:
    chat = 5001
    assert post(webhook, updates.text(chat, "/start"))["update"] == "accepted"
    assert "Juniper Lane" in tg.wait_for_messages(chat, 1)[0].text
    post(webhook, updates.text(chat, "where is my order?"))
    asked = tg.wait_for_messages(chat, 2)[1]
    assert "order number" in asked.text
    post(webhook, updates.text(chat, "10023"))
    status = tg.wait_for_messages(chat, 3)[2].text
    assert "10023" in status and "JJD0001234567" in status
    assert tg.calls("sendChatAction"), "the shopper saw 'typing...' while the bot worked"
    transcript = webhook.get(f"/api/v1/conversations/telegram:{chat}").json()["history"]
    assert [t["role"] for t in transcript] == ["user", "bot"] * 3


def test_buttons_are_inline_keyboards_and_a_press_is_answered(webhook: TestClient, tg: FakeTelegram,
                                                              updates: UpdateFactory) -> None:
    chat = 5002
    post(webhook, updates.text(chat, "hmm, the thing with the stuff"))
    offer = tg.wait_for_messages(chat, 1)[0]
    assert offer.reply_markup is not None, "the fallback offers topics as buttons"
    payloads = [row[0]["callback_data"] for row in offer.reply_markup["inline_keyboard"]]
    assert "/contact_human_agent" in payloads
    post(webhook, updates.callback(chat, "/contact_human_agent", message_id=offer.message_id))
    person = tg.wait_for_messages(chat, 2)[1].text
    assert "reply right here" in person
    assert len(tg.calls("answerCallbackQuery")) == 1, "the button's spinner was stopped"


def test_commands(webhook: TestClient, tg: FakeTelegram, updates: UpdateFactory) -> None:
    chat = 5003
    post(webhook, updates.text(chat, "/help"))
    assert "/human" in tg.wait_for_messages(chat, 1)[0].text
    post(webhook, updates.text(chat, "where is my order?"))
    tg.wait_for_messages(chat, 2)
    assert webhook.get(f"/api/v1/conversations/telegram:{chat}").status_code == 200
    post(webhook, updates.text(chat, "/reset"))
    assert "fresh conversation" in tg.wait_for_messages(chat, 3)[2].text
    assert webhook.get(f"/api/v1/conversations/telegram:{chat}").status_code == 404, "forgotten"
    post(webhook, updates.text(chat, "/human"))
    assert "reply right here" in tg.wait_for_messages(chat, 4)[3].text


def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_processed(
        webhook: TestClient, tg: FakeTelegram, updates: UpdateFactory) -> None:
    chat = 5004
    update = updates.text(chat, "where is my order 10023?")
    for headers in ({}, {SECRET_HEADER: "guess"}, {SECRET_HEADER: SECRET + "x"}):
        response = webhook.post("/telegram/webhook", json=update, headers=headers)
        assert response.status_code == 403
    assert post(webhook, update)["update"] == "accepted", "the refused posts were never kept"
    assert "JJD0001234567" in tg.wait_for_messages(chat, 1)[0].text


def test_an_update_delivered_five_times_at_once_is_answered_once(webhook: TestClient, tg: FakeTelegram,
                                                                  updates: UpdateFactory) -> None:
    chat = 5005
    update = updates.text(chat, "hello")
    with ThreadPoolExecutor(5) as pool:
        outcomes = [r["update"] for r in pool.map(lambda _: post(webhook, update), range(5))]
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 4
    post(webhook, updates.text(chat, "thank you"))
    # The chat's updates are answered in order: had a duplicate been answered, it would come first.
    replies = tg.wait_for_messages(chat, 2)
    assert len(tg.messages(chat)) == 2
    assert "Juniper Lane" in replies[0].text and "welcome" in replies[1].text.lower()


def test_malformed_webhook_bodies_get_clear_errors(webhook: TestClient) -> None:
    headers = {SECRET_HEADER: SECRET, "content-type": "application/json"}
    for body in (b"{not json", b"\xff\xfe\x00binary", b"[1, 2]", b'{"message": {}}', b'{"update_id": "7"}'):
        response = webhook.post("/telegram/webhook", content=body, headers=headers)
        assert response.status_code == 400, body
        assert "detail" in response.json()
    huge = webhook.post("/telegram/webhook", content=b"{" + b" " * 200_000 + b"}", headers=headers)
    assert huge.status_code == 413


def test_every_kind_of_non_text_message_gets_a_polite_reply(webhook: TestClient, tg: FakeTelegram,
                                                            updates: UpdateFactory) -> None:
    chat = 5006
    post(webhook, updates.text(chat, "hi"))
    tg.wait_for_messages(chat, 1)
    kinds = [updates.photo(chat), updates.sticker(chat), updates.voice(chat), updates.document(chat),
             updates.location(chat), updates.contact(chat), updates.edited(chat, "hi, edited")]
    for update in kinds:
        post(webhook, update)
    post(webhook, updates.text(chat, "where is my order 10023?"))
    answers = texts(tg.wait_for_messages(chat, 9))
    assert all("only read text messages" in a for a in answers[1:7])
    assert "not edits" in answers[7]
    assert "JJD0001234567" in answers[8], "the worker is still answering after all of them"


def test_in_a_group_the_bot_answers_only_when_addressed(webhook: TestClient, tg: FakeTelegram,
                                                        updates: UpdateFactory) -> None:
    group = -100777
    post(webhook, updates.text(group, "where is my order 10023?"))  # people talking among themselves
    post(webhook, updates.photo(group))
    post(webhook, updates.text(group, "/help@some_other_bot"))
    post(webhook, updates.text(group, f"@{tg.bot_username} where is my order 10023?"))
    first = tg.wait_for_messages(group, 1)
    assert "JJD0001234567" in first[0].text
    post(webhook, updates.text(group, "thanks!", reply_to_bot=True))
    post(webhook, updates.text(group, f"/help@{tg.bot_username}"))
    answers = texts(tg.wait_for_messages(group, 3))
    assert len(tg.messages(group)) == 3, "nothing but the three addressed messages was answered"
    assert "welcome" in answers[1].lower() and "/human" in answers[2]


def test_a_429_storm_loses_nothing_and_keeps_to_the_limits(webhook: TestClient, tg: FakeTelegram,
                                                           updates: UpdateFactory) -> None:
    tg.flood_control(min_interval_s=0.3, retry_after=1)
    tg.fail_next("sendMessage", times=3, status=429, retry_after=1)
    tg.fail_next("sendChatAction", times=2, status=502)
    chats = [5101, 5102, 5103]
    for chat in chats:
        post(webhook, updates.text(chat, "hi"))
        post(webhook, updates.text(chat, "where is my order 10023?"))
        post(webhook, updates.text(chat, "thank you"))
    for chat in chats:
        answers = texts(tg.wait_for_messages(chat, 3, timeout=60))
        assert "Juniper Lane" in answers[0] and "JJD0001234567" in answers[1] and "welcome" in answers[2].lower()
        assert len(tg.messages(chat)) == 3
    refused = [c for c in tg.calls("sendMessage") if c.status == 429]
    assert len(refused) >= 3
    assert tg.violations == 0, "no request for a chat while Telegram had told us to wait"


def test_a_reply_of_ten_thousand_characters_arrives_split_in_order(tmp_path: Path, intent_model_dir: Path,
                                                                    tg: FakeTelegram) -> None:
    """Operator replies (and anything else the shop sends) go out through the same sender."""
    settings = telegram_settings(tmp_path, intent_model_dir, tg, None)
    text = "\n\n".join(f"Part {i}. " + "The parcel left our warehouse this morning. " * 23 for i in range(10))
    assert len(text) >= 10_000

    async def send() -> None:
        async with open_services(settings) as services, open_telegram(settings, services, workers=0) as telegram:
            assert telegram is not None
            await telegram.channel.application.initialize()
            await telegram.channel.sender.send_replies(5201, [Reply(text), Reply("Anything else?")])

    asyncio.run(send())
    parts = texts(tg.messages(5201))
    assert len(parts) == 4 and parts[-1] == "Anything else?"
    assert all(len(p) <= 4096 for p in parts)
    assert "\n\n".join(parts[:-1]).split() == text.split(), "every word, in order"
    assert all(p.startswith("Part ") for p in parts[:-1]), "cut between paragraphs"


async def test_a_conversation_by_long_polling(tmp_path: Path, intent_model_dir: Path, tg: FakeTelegram,
                                              updates: UpdateFactory) -> None:
    settings = telegram_settings(tmp_path, intent_model_dir, tg, None)
    chat = 5301
    tg.push_update(updates.text(chat, "hi"))
    tg.push_update(updates.text(chat, "where is my order 10023?"))
    stop = asyncio.Event()
    async with open_services(settings) as services, open_telegram(settings, services) as telegram:
        assert telegram is not None
        polling = asyncio.create_task(poll(telegram.channel.application, telegram.inbox, stop, timeout_s=1))
        answers = texts(await tg.wait_for_messages_async(chat, 2, timeout=30))
        tg.push_update(updates.text(chat, "thank you"))
        answers = texts(await tg.wait_for_messages_async(chat, 3, timeout=30))
        stop.set()
        await polling
    assert "Juniper Lane" in answers[0] and "JJD0001234567" in answers[1] and "welcome" in answers[2].lower()
    offsets = [c.params.get("offset") for c in tg.calls("getUpdates")]
    assert offsets[0] is None and offsets[-1] is not None, "the offset moved past what the inbox keeps"
    assert tg.calls("deleteWebhook"), "polling removes a webhook first (Telegram refuses both at once)"


class _UnreachableInbox(MemoryInbox):
    """An inbox whose store is down."""

    async def put(self, update_id: int, chat: str, payload: str) -> bool:
        raise ConnectionError("Redis is not answering")


def test_an_update_that_cannot_be_kept_gets_503_so_telegram_delivers_it_again(updates: UpdateFactory) -> None:
    app = FastAPI()
    app.include_router(webhook_router(lambda request: (_UnreachableInbox(), SECRET)))
    with TestClient(app) as client:
        response = client.post("/telegram/webhook", json=updates.text(1, "hi"), headers={SECRET_HEADER: SECRET})
    assert response.status_code == 503


def test_without_a_configured_secret_every_webhook_post_is_refused(updates: UpdateFactory) -> None:
    app = FastAPI()
    app.include_router(webhook_router(lambda request: (MemoryInbox(), "")))
    with TestClient(app) as client:
        for headers in ({}, {SECRET_HEADER: ""}, {SECRET_HEADER: "anything"}):
            assert client.post("/telegram/webhook", json=updates.text(1, "hi"), headers=headers).status_code == 403


def test_without_a_token_the_webhook_says_telegram_is_not_enabled(settings: Settings, updates: UpdateFactory) -> None:
    with TestClient(build_app(settings)) as client:
        response = client.post("/telegram/webhook", json=updates.text(1, "hi"), headers={SECRET_HEADER: SECRET})
    assert response.status_code == 404 and "TELEGRAM_BOT_TOKEN" in response.json()["detail"]


def test_while_a_person_has_the_chat_the_bot_is_silent_and_operators_see_everything(
        webhook: TestClient, tg: FakeTelegram, updates: UpdateFactory) -> None:
    chat = 5007
    post(webhook, updates.text(chat, "/human"))
    assert "reply right here" in tg.wait_for_messages(chat, 1)[0].text
    for update in (updates.photo(chat), updates.text(chat, "/reset"), updates.text(chat, "/help"),
                   updates.edited(chat, "where is order 10023"), updates.text(chat, "hello?")):
        post(webhook, update)

    def transcript() -> list[str]:
        found = webhook.get(f"/api/v1/conversations/telegram:{chat}")
        return [t["text"] for t in found.json()["history"] if t["role"] == "user"] if found.status_code == 200 else []

    tg.wait_for(lambda: len(transcript()) == 6, timeout=30, what="all five updates in the transcript")
    assert transcript()[1:] == ["[the shopper sent a photo]", "[the shopper typed /reset]",
                                "[the shopper typed /help]", "[edited message] where is order 10023", "hello?"]
    assert len(tg.messages(chat)) == 1, "nothing from the bot after the handoff reply"
