"""The same actions served by rasa-sdk's action server (`shopbot actions`) and called over Rasa's webhook."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bot.actions.runner import action_call
from bot.app import build_app
from bot.types import Conversation
from nlu.parse import Entity, IntentScore, Parse
from tests.conftest import ROOT, make_settings, redis_url
from tests.test_conversations import Shopper


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def action_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`shopbot actions` in its own process, with its own demo order store."""
    db = tmp_path_factory.mktemp("actions") / "orders.sqlite"
    port = free_port()
    env = {**os.environ, "SHOPBOT_ROOT": str(ROOT), "SHOPBOT_DATA__ORDERS_DB": str(db)}
    process = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(ROOT / "config.yml"), "actions",
                                "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the action server did not start: {process.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.3)
    yield url, db
    process.terminate()
    process.wait(timeout=10)


def test_webhook_round_trip_in_rasa_format(action_server: tuple[str, Path]) -> None:
    url, _ = action_server
    names = {a["name"] for a in httpx.get(f"{url}/actions").json()}
    assert {"action_track_order", "action_cancel_order", "action_check_payment_methods"} <= names
    parse = Parse("where is 10023", IntentScore("track_order", 0.98), entities=(Entity("order_id", "10023", 9, 14),))
    response = httpx.post(f"{url}/webhook", json=action_call("action_track_order", Conversation("c1"), parse, "rest"))
    assert response.status_code == 200
    body = response.json()
    assert "JJD0001234567" in body["responses"][0]["text"]
    assert {"event": "slot", "name": "order_id", "value": "10023"}.items() <= body["events"][0].items()


def test_unknown_action_is_a_404_from_the_server(action_server: tuple[str, Path]) -> None:
    url, _ = action_server
    parse = Parse("x", IntentScore("greet", 1.0))
    response = httpx.post(f"{url}/webhook", json=action_call("action_nope", Conversation("c2"), parse, "rest"))
    assert response.status_code == 404


def test_engine_uses_the_remote_action_server(action_server: tuple[str, Path], tmp_path: Path,
                                              intent_model_dir: Path, redis_prefix: str) -> None:
    url, db = action_server
    settings = make_settings(tmp_path, intent_model_dir, REDIS_URL=redis_url(),
                             SHOPBOT_STATE__KEY_PREFIX=redis_prefix, SHOPBOT_ACTIONS__ENDPOINT=f"{url}/webhook")
    with TestClient(build_app(settings)) as client:
        shopper = Shopper(client)
        assert "JJD0001234567" in shopper.hears("where is my order 10023")
        shopper.hears("cancel order 10036")
        assert "Shall I cancel" in shopper.hears("rosa.esposito@example.com")
        assert "cancelled" in shopper.hears("yes")
    import sqlite3

    with sqlite3.connect(db) as conn:  # the action server's store changed, not the test's
        assert conn.execute("SELECT status FROM orders WHERE id = '10036'").fetchone()[0] == "cancelled"
    assert not (tmp_path / "orders.sqlite").exists()


def test_unreachable_action_server_gets_a_polite_reply(tmp_path: Path, intent_model_dir: Path) -> None:
    settings = make_settings(tmp_path, intent_model_dir,
                             SHOPBOT_ACTIONS__ENDPOINT=f"http://127.0.0.1:{free_port()}/webhook")
    with TestClient(build_app(settings)) as client:
        answer = Shopper(client).hears("where is my order 10023")
        assert "something went wrong on my side" in answer
