"""The tiny model and the artifact trained from it, shared by every model test in tests/nlu."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.train import TrainResult, train_intents
from tests.nlu.tiny_model import keyword_examples, save_tiny_base, tiny_training


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_base(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> TrainResult:
    """Trained once per run; tests that change an artifact copy it first."""
    output = tmp_path_factory.mktemp("models") / "intents"
    return train_intents(keyword_examples(), output, tiny_training(tiny_base), progress=False)
