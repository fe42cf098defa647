"""Fixtures shared by the end-to-end tests: a really fine-tuned classifier, settings, the app."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: a short but real fine-tuning run on the demo data: enough for the transcript tests
TEST_EPOCHS = 5


def redis_url(db: int = 14) -> str:
    return os.environ.get("SHOPBOT_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{db}")


@pytest.fixture(scope="session")
def intent_model_dir() -> Path:
    """The demo shop's classifier, trained once and cached by data hash (CI trains it once)."""
    from nlu.dataset import data_hash, load_examples
    from nlu.runtime import ONNX_FILE
    from nlu.train import TrainConfig, train_intents

    examples = load_examples(ROOT / "data" / "nlu.yml")
    config = TrainConfig(epochs=TEST_EPOCHS)
    # The training code is part of the key: a change to how models are trained or exported
    # must not be tested against a model the old code made.
    code = "".join((ROOT / "nlu" / name).read_text() for name in ("train.py", "runtime.py", "augment.py", "ood.py"))
    key = hashlib.sha256(f"{data_hash(examples)}{config}{code}".encode()).hexdigest()[:16]
    model_dir = ROOT / ".pytest_cache" / "shopbot" / f"intents-{key}"
    if not (model_dir / "shopbot_nlu.json").is_file() or not (model_dir / ONNX_FILE).is_file():
        train_intents(examples, model_dir, config, progress=False)
    return model_dir


def make_settings(tmp_path: Path, model_dir: Path, **env: str) -> Settings:
    """The repository's config.yml with the test's model, a private order store and env overrides."""
    settings = load_settings(ROOT / "config.yml", env={"SHOPBOT_ROOT": str(ROOT), **env})
    data = dataclasses.replace(settings.data, orders_db=tmp_path / "orders.sqlite")
    nlu = dataclasses.replace(settings.nlu, model_dir=model_dir)
    generation = settings.generation
    if "SHOPBOT_GENERATION__MODEL_DIR" not in env:  # no generator unless a test brings one: CI has none
        generation = dataclasses.replace(generation, model_dir=tmp_path / "no-generator")
    safety = settings.safety
    if "SHOPBOT_SAFETY__MODEL_DIR" not in env:  # the rule checks only, unless a test brings a classifier
        safety = dataclasses.replace(safety, model_dir=tmp_path / "no-safety-model")
    return dataclasses.replace(settings, data=data, nlu=nlu, generation=generation, safety=safety)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the real Redis; its keys are removed afterwards."""
    prefix = f"shopbot-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url())
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis answers at {redis_url()}: run `make test`, which starts one")
    yield prefix
    for key in client.scan_iter(match=f"{prefix}:*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
def settings(tmp_path: Path, intent_model_dir: Path, redis_prefix: str) -> Settings:
    """Settings for one test: real classifier, real Redis (own prefix), own demo order store."""
    return make_settings(tmp_path, intent_model_dir, REDIS_URL=redis_url(),
                         SHOPBOT_STATE__KEY_PREFIX=redis_prefix)
