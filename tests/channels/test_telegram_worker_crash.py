"""A Telegram worker process killed in the middle of an update: the update is answered after the
restart, exactly once. Real processes (`shopbot telegram worker`), real Redis, the fake Bot API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.app import build_app
from bot.channels.telegram_delivery import SECRET_HEADER
from tests.channels.test_telegram import SECRET, telegram_settings
from tests.conftest import ROOT, redis_url
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.telegram_updates import UpdateFactory


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def worker_env(tmp_path: Path, model_dir: Path, tg: FakeTelegram, prefix: str) -> dict[str, str]:
    return {**os.environ, "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url(), "SHOPBOT_STATE__KEY_PREFIX": prefix,
            "SHOPBOT_NLU__MODEL_DIR": str(model_dir), "SHOPBOT_DATA__ORDERS_DB": str(tmp_path / "orders.sqlite"),
            "SHOPBOT_GENERATION__MODEL_DIR": str(tmp_path / "no-generator"),
            "SHOPBOT_SAFETY__MODEL_DIR": str(tmp_path / "no-safety-model"),
            "SHOPBOT_TELEGRAM__CONSUMER": "worker-a", "SHOPBOT_TELEGRAM__LEASE_MS": "1500",
            "SHOPBOT_TELEGRAM__CLAIM_IDLE_MS": "1000", "SHOPBOT_TELEGRAM__TYPING_INTERVAL_S": "30"}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bot", "telegram", "worker"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_an_update_whose_worker_was_killed_is_answered_once_after_the_restart(
        tmp_path: Path, intent_model_dir: Path, tg: FakeTelegram, redis_prefix: str) -> None:
    updates = UpdateFactory(tg.bot_username, tg.bot_id)
    chat = 5401
    settings = telegram_settings(tmp_path, intent_model_dir, tg, redis_prefix, SHOPBOT_TELEGRAM__WORKERS="0")
    env = worker_env(tmp_path, intent_model_dir, tg, redis_prefix)
    log = tmp_path / "workers.log"
    with TestClient(build_app(settings)) as webhook:  # this process only accepts updates
        press = updates.callback(chat, "/track_order")
        response = webhook.post("/telegram/webhook", json=press, headers={SECRET_HEADER: SECRET})
        assert response.json()["update"] == "accepted"
        tg.hold_next("answerCallbackQuery", 4.0)  # the first worker hangs on its first call for this update
        first = start_worker(env, log)
        try:
            tg.wait_for(lambda: bool(tg.calls("answerCallbackQuery")), timeout=90, what="the worker took the update")
        finally:
            first.kill()
            first.wait()
        assert tg.messages(chat) == [], "killed before it could answer"
        second = start_worker(env, log)
        try:
            answer = tg.wait_for_messages(chat, 1, timeout=90)[0]
            assert "order number" in answer.text
            webhook.post("/telegram/webhook", json=updates.text(chat, "10023"), headers={SECRET_HEADER: SECRET})
            replies = tg.wait_for_messages(chat, 2, timeout=30)
        finally:
            second.terminate()
            second.wait(timeout=30)
    assert len(tg.messages(chat)) == 2, log.read_text()
    assert len(tg.calls("answerCallbackQuery")) == 2, "the restarted worker took the update over from the start"
    assert "JJD0001234567" in replies[1].text, "the next update came after the recovered one, and answered it"
