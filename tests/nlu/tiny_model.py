"""A tiny random BERT and keyword-separable messages: model tests that run in seconds.

The model is 1 layer x 32 wide; quality is only asserted as "clearly above chance" on data a
keyword gives away. Real quality is `shopbot evaluate`'s job.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from nlu.dataset import Example
from nlu.train import TrainConfig, bundled_base_model

KEYWORDS = {"track_order": "parcel", "request_refund": "money", "greet": "hello"}
FILLERS = ["please", "can you", "i want", "help me", "quickly", "today", "now", "hey", "so"]


def tiny_training(base: Path) -> TrainConfig:
    """A random tiny model needs a large step size to learn anything in two short epochs; one
    thread because a 32-wide model only loses time to thread synchronisation."""
    return TrainConfig(
        base_model=str(base),
        epochs=2,
        learning_rate=1e-2,
        batch_size=4,
        warmup_ratio=0.0,
        threads=1,
    )


def keyword_examples(per_intent: int = 40) -> list[Example]:
    """Messages whose intent is given away by one keyword among random filler words."""
    rng = random.Random(7)
    return [
        Example(f"{rng.choice(FILLERS)} {keyword} {rng.choice(FILLERS)} {i}", intent)
        for intent, keyword in KEYWORDS.items()
        for i in range(per_intent)
    ]


def save_tiny_base(path: Path) -> Path:
    """A randomly initialised 1-layer BERT with the bundled MiniLM tokenizer, saved as a base."""
    tokenizer = AutoTokenizer.from_pretrained(bundled_base_model())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        # Wider initial weights and no dropout: with BERT's 0.02 the random [CLS] vector hardly
        # depends on the input, and 2 of 10 seeds then never separated all three intents.
        initializer_range=0.1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_classifier(layers: int = 2, labels: int = 3) -> BertForSequenceClassification:
    """An untrained BERT classifier as small as the tiny base but `layers` deep, for export tests
    (the export treats the last layer apart from the ones before it)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=labels,
                        initializer_range=0.3)  # BERT's 0.02 leaves the outputs nearly input-independent
    return BertForSequenceClassification(config).eval()
