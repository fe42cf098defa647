"""Serving: load the saved intent model and turn messages into `Parse` verdicts.

Never imports the training code; the artifact directory (`save_pretrained` output,
`shopbot_nlu.json` and, since out-of-scope detection, `ood.npz`) is the only contract between
training and serving.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlu.entities import extract_entities
from nlu.ood import DETECTOR_FILE, OutOfScopeDetector
from nlu.parse import IntentScore, Parse
from nlu.quantize import quantize_for_serving

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
        detector: OutOfScopeDetector | None = None,
    ) -> None:
        """Wrap an in-memory model (tests, training); the caller decides train/eval mode.

        Without a `detector` nothing is ever flagged out of scope (models trained before it).
        """
        if model.config.num_labels != len(labels):
            raise ValueError(f"model has {model.config.num_labels} outputs, {len(labels)} labels")
        self._model = model
        self._tokenizer = tokenizer
        self._labels = tuple(labels)
        self._products = tuple(products)
        self._metadata = dict(metadata or {})
        self._max_length = max_length
        self._batch_size = batch_size
        self._detector = detector

    @classmethod
    def load(
        cls, model_dir: str | Path, products: Sequence[str] = (), threads: int = 0, *, quantized: bool = False
    ) -> IntentClassifier:
        """Load a directory written by `shopbot train intents`; `threads` > 0 pins torch's.

        `quantized` serves an int8 copy of the encoder (`nlu.quantize`): faster on CPU, the head
        and the out-of-scope embeddings still come from the same single forward pass.
        """
        model_dir = Path(model_dir)
        metadata_path = model_dir / METADATA_FILE
        if not metadata_path.is_file() or not (model_dir / "config.json").is_file():
            raise ModelNotFoundError(model_dir)
        if threads > 0:
            torch.set_num_threads(threads)
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        if quantized:
            model = quantize_for_serving(model)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        max_length = int(metadata.get("hyperparameters", {}).get("max_length", 64))
        detector = OutOfScopeDetector.load(model_dir) if (model_dir / DETECTOR_FILE).is_file() else None
        return cls(
            model,
            tokenizer,
            metadata["labels"],
            products=products,
            metadata=metadata,
            max_length=max_length,
            detector=detector,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """Intent names in the model's output order."""
        return self._labels

    @property
    def metadata(self) -> dict[str, Any]:
        """The training metadata (`shopbot_nlu.json`); empty for an in-memory model."""
        return dict(self._metadata)

    @property
    def detector(self) -> OutOfScopeDetector | None:
        """The out-of-scope detector saved with the model, if any."""
        return self._detector

    def parse(self, text: str) -> Parse:
        """Classify one message."""
        return self.parse_batch([text])[0]

    def parse_batch(self, texts: Sequence[str]) -> list[Parse]:
        """Classify many messages, `batch_size` at a time (one forward pass per chunk)."""
        parses: list[Parse] = []
        for start in range(0, len(texts), self._batch_size):
            chunk = list(texts[start : start + self._batch_size])
            probabilities, embeddings = self._forward(chunk)  # (chunk, n_labels), (chunk, hidden)
            scores = self._detector.score(embeddings).tolist() if self._detector else [None] * len(chunk)
            parses.extend(map(self._to_parse, chunk, probabilities, scores))
        return parses

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The sentence embeddings that feed the classifier head, (len(texts), hidden) float32."""
        starts = range(0, len(texts), self._batch_size)
        chunks = [self._forward(list(texts[i : i + self._batch_size]))[1] for i in starts]
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> tuple[torch.Tensor, np.ndarray]:
        """Class probabilities and head-input embeddings of one chunk, from a single forward pass."""
        inputs = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        head = getattr(self._model, "classifier", None)
        if isinstance(head, torch.nn.Module):
            with _inputs_of(head) as seen:
                logits = self._model(**inputs).logits  # (batch, n_labels)
            embeddings = seen[0]  # BERT: dropout(tanh(pooler([CLS]))), (batch, hidden)
        else:  # no `classifier` submodule to watch: the last layer's first token instead
            output = self._model(**inputs, output_hidden_states=True)
            logits, embeddings = output.logits, output.hidden_states[-1]
        if embeddings.dim() == 3:  # heads like RoBERTa's take (batch, tokens, hidden) and use token 0
            embeddings = embeddings[:, 0]
        return torch.softmax(logits.float(), dim=-1), embeddings.float().numpy()

    def _to_parse(self, text: str, probabilities: torch.Tensor, ood_score: float | None) -> Parse:
        top = torch.topk(probabilities, k=min(RANKING_SIZE, len(self._labels)))
        ranking = tuple(
            IntentScore(self._labels[i], float(p))
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        )
        out_of_scope = self._detector is not None and ood_score is not None and ood_score > self._detector.threshold
        return Parse(
            text=text,
            intent=ranking[0],
            ranking=ranking,
            entities=extract_entities(text, self._products),
            out_of_scope=out_of_scope,
            metadata={} if ood_score is None else {"ood_score": ood_score},
        )


@contextmanager
def _inputs_of(head: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the first input `head` receives during the forward pass inside the block.

    A hook rather than running the encoder and head by hand: one pass gives both the logits and
    the embedding, for any model with a `classifier` submodule (BERT, DistilBERT, RoBERTa,
    ELECTRA, DeBERTa ...), whatever its pooling.
    """
    seen: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        seen.append(args[0])

    handle = head.register_forward_pre_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()
