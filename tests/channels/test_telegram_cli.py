"""`shopbot telegram ...` through the real entry point, against the fake Bot API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.test_telegram import SECRET
from tests.fakes.telegram_api import FakeTelegram
from tests.test_cli import shopbot


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def test_set_webhook_registers_the_url_with_the_secret_and_delete_webhook_removes_it(tg: FakeTelegram) -> None:
    env = {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url, "TELEGRAM_WEBHOOK_SECRET": SECRET}
    url = "https://shop.example.com/telegram/webhook"
    result = shopbot("telegram", "set-webhook", url, env=env)
    assert result.returncode == 0, result.stderr
    assert url in result.stdout
    assert tg.webhook is not None and tg.webhook["url"] == url and tg.webhook["secret_token"] == SECRET
    assert set(tg.webhook["allowed_updates"]) == {"message", "edited_message", "callback_query"}
    assert SECRET not in result.stdout + result.stderr, "the secret is never printed"
    result = shopbot("telegram", "delete-webhook", env=env)
    assert result.returncode == 0, result.stderr
    assert tg.webhook is None


def test_clear_errors_for_a_missing_token_secret_or_redis_and_a_refused_token(tg: FakeTelegram) -> None:
    no_token = shopbot("telegram", "poll", env={"TELEGRAM_BOT_TOKEN": ""})
    assert no_token.returncode == 1 and "TELEGRAM_BOT_TOKEN" in no_token.stderr
    base = {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url}
    no_secret = shopbot("telegram", "set-webhook", "https://shop.example.com/telegram/webhook",
                        env={**base, "TELEGRAM_WEBHOOK_SECRET": ""})
    assert no_secret.returncode == 1 and "TELEGRAM_WEBHOOK_SECRET" in no_secret.stderr
    assert tg.webhook is None
    no_redis = shopbot("telegram", "worker", env={**base, "REDIS_URL": ""})
    assert no_redis.returncode == 1 and "REDIS_URL" in no_redis.stderr
    wrong = shopbot("telegram", "delete-webhook", env={**base, "TELEGRAM_BOT_TOKEN": "999:not-the-token"})
    assert wrong.returncode == 1 and "refused TELEGRAM_BOT_TOKEN" in wrong.stderr
    bad_secret = shopbot("telegram", "delete-webhook", env={**base, "TELEGRAM_WEBHOOK_SECRET": "has spaces!"})
    assert bad_secret.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET" in bad_secret.stderr
