"""A tiny generator trained once per run on a small corpus: model tests that run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.actions.knowledge import money
from generation.corpus import build_corpus, load_templates, split
from generation.retrieval import KnowledgeIndex, Passage, SentenceEncoder, catalog_passages
from generation.train import GeneratorConfig, GeneratorResult, train_generator
from tests.conftest import ROOT
from tests.generation.test_grounded import JACKET

TINY = GeneratorConfig(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=400, steps=30, batch_size=8,
                       learning_rate=3e-3, warmup_steps=5, max_length=192, threads=1)


@pytest.fixture(scope="session")
def corpus():  # type: ignore[no-untyped-def]
    return split(build_corpus(load_templates(ROOT / "data" / "generator"), 300, seed=1), 0.1, seed=1)


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory, corpus) -> GeneratorResult:  # type: ignore[no-untyped-def]
    train, validation = corpus
    return train_generator(train, validation, tmp_path_factory.mktemp("generator") / "model", TINY, progress=False)


@pytest.fixture(scope="session")
def tiny_dir(tiny_generator: GeneratorResult) -> Path:
    return tiny_generator.output_dir


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    """The Harbor Rain Jacket's catalogue passages and one FAQ passage, embedded with the bundled encoder."""
    return KnowledgeIndex(catalog_passages([JACKET], money) + [Passage("Returns are free for 30 days.", "faq:x")],
                          SentenceEncoder())
