"""Serving: load the saved intent model and turn messages into `Parse` verdicts.

Never imports the training code; the artifact directory (`save_pretrained` output plus
`shopbot_nlu.json`) is the only contract between training and serving.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlu.entities import extract_entities
from nlu.parse import IntentScore, Parse

METADATA_FILE = "shopbot_nlu.json"
RANKING_SIZE = 10  # intents kept in `Parse.ranking`, as Rasa does


class ModelNotFoundError(FileNotFoundError):
    """No trained intent model at `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"no trained intent model in {self.path}: run `shopbot train intents` first")


class IntentClassifier:
    """A fine-tuned sequence classifier plus the rule-based entity extractor."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        products: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        max_length: int = 64,
        batch_size: int = 32,
    ) -> None:
        """Wrap an in-memory model (tests, training); the caller decides train/eval mode."""
        if model.config.num_labels != len(labels):
            raise ValueError(f"model has {model.config.num_labels} outputs, {len(labels)} labels")
        self._model = model
        self._tokenizer = tokenizer
        self._labels = tuple(labels)
        self._products = tuple(products)
        self._metadata = dict(metadata or {})
        self._max_length = max_length
        self._batch_size = batch_size

    @classmethod
    def load(cls, model_dir: str | Path, products: Sequence[str] = (), threads: int = 0) -> IntentClassifier:
        """Load a directory written by `shopbot train intents`; `threads` > 0 pins torch's."""
        model_dir = Path(model_dir)
        metadata_path = model_dir / METADATA_FILE
        if not metadata_path.is_file() or not (model_dir / "config.json").is_file():
            raise ModelNotFoundError(model_dir)
        if threads > 0:
            torch.set_num_threads(threads)
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        max_length = int(metadata.get("hyperparameters", {}).get("max_length", 64))
        return cls(
            model,
            tokenizer,
            metadata["labels"],
            products=products,
            metadata=metadata,
            max_length=max_length,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """Intent names in the model's output order."""
        return self._labels

    @property
    def metadata(self) -> dict[str, Any]:
        """The training metadata (`shopbot_nlu.json`); empty for an in-memory model."""
        return dict(self._metadata)

    def parse(self, text: str) -> Parse:
        """Classify one message."""
        return self.parse_batch([text])[0]

    def parse_batch(self, texts: Sequence[str]) -> list[Parse]:
        """Classify many messages, `batch_size` at a time (one forward pass per chunk)."""
        parses: list[Parse] = []
        for start in range(0, len(texts), self._batch_size):
            chunk = list(texts[start : start + self._batch_size])
            probabilities = self._probabilities(chunk)  # (len(chunk), n_labels)
            parses.extend(self._to_parse(t, p) for t, p in zip(chunk, probabilities, strict=True))
        return parses

    @torch.inference_mode()
    def _probabilities(self, texts: list[str]) -> torch.Tensor:
        inputs = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        logits = self._model(**inputs).logits  # (batch, n_labels)
        return torch.softmax(logits.float(), dim=-1)

    def _to_parse(self, text: str, probabilities: torch.Tensor) -> Parse:
        top = torch.topk(probabilities, k=min(RANKING_SIZE, len(self._labels)))
        ranking = tuple(
            IntentScore(self._labels[i], float(p))
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        )
        return Parse(
            text=text,
            intent=ranking[0],
            ranking=ranking,
            entities=extract_entities(text, self._products),
            out_of_scope=False,  # out-of-scope detection comes with a later issue
        )
