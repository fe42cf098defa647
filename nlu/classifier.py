"""Serving: load the saved intent model and turn messages into `Parse` verdicts.

Never imports the training code; the artifact directory (`save_pretrained` output,
`shopbot_nlu.json`, the int8 ONNX graph and the out-of-scope detectors) is the only contract
between training and serving. Which engine runs the encoder is `nlu.runtime`'s business.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlu.entities import extract_entities
from nlu.language import foreign_language
from nlu.ood import DETECTOR_FILE, OutOfScopeDetector
from nlu.parse import IntentScore, Parse
from nlu.runtime import ONNX_FILE, Encoder, OnnxEncoder, TorchEncoder

METADATA_FILE = "shopbot_nlu.json"
RANKING_SIZE = 10  # intents kept in `Parse.ranking`, as Rasa does
# The fixed cost of one forward call, in padded tokens of batch work: measured with the int8
# graph on 2 cores, one 16-token message takes ~2.4 ms and a sorted batch ~0.07 ms per token.
CALL_OVERHEAD_TOKENS = 16
OUT_OF_SCOPE = "out_of_scope"  # the optional intent trained on written negatives (Rasa's name for it)
# Each runtime has its own out-of-scope detector: int8 rounding moves the Mahalanobis scores
# more than it moves the embeddings, so a threshold is only valid for the runtime it was set on.
RUNTIMES = {"onnx-int8": "ood.onnx-int8.npz", "torch": DETECTOR_FILE}


class ModelNotFoundError(FileNotFoundError):
    """No trained intent model at `path`."""

    def __init__(self, path: str | Path, detail: str = "") -> None:
        self.path = Path(path)
        super().__init__(f"no trained intent model in {self.path}: " + (detail or "run `shopbot train intents` first"))


class IntentClassifier:
    """A fine-tuned sequence classifier plus the rule-based entity extractor."""

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        products: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        max_length: int = 64,
        batch_size: int = 32,
        detector: OutOfScopeDetector | None = None,
        class_threshold: float | None = None,
    ) -> None:
        """Wrap an encoder (`TorchEncoder(model)` in training and tests, ONNX Runtime when served).

        A message is out of scope when the `detector` finds it far from every support intent,
        when `out_of_scope` is the top intent, or when the `out_of_scope` intent's probability
        exceeds `class_threshold` (both thresholds are set at training time, per runtime), when it
        holds no letter at all, and when it is written in another language (`nlu.language`; its
        `metadata["language"]` names it).
        """
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the intent classifier needs a fast (Rust) tokenizer")
        self._encoder = encoder
        # A private copy of the Rust tokenizer: truncating, never padding (batches pad themselves).
        self._tokenize = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
        self._tokenize.enable_truncation(max_length)
        self._tokenize.no_padding()
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._labels = tuple(labels)
        self._products = tuple(products)
        self._metadata = dict(metadata or {})
        self._batch_size = batch_size
        self._detector = detector
        self._class_threshold = class_threshold
        self._oos_index = self._labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in self._labels else None

    @classmethod
    def load(
        cls, model_dir: str | Path, products: Sequence[str] = (), threads: int = 0, *, runtime: str = "onnx-int8"
    ) -> IntentClassifier:
        """Load a directory written by `shopbot train intents`; `threads` > 0 pins the runtime's threads.

        `runtime` "onnx-int8" serves the int8 ONNX graph exported at training time (fast on
        CPU); "torch" runs the fine-tuned fp32 weights (the reference the benchmark compares with).
        """
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown intent runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        model_dir = Path(model_dir)
        metadata_path = model_dir / METADATA_FILE
        if not metadata_path.is_file() or not (model_dir / "config.json").is_file():
            raise ModelNotFoundError(model_dir)
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        encoder: Encoder
        if runtime == "torch":
            import torch

            if threads > 0:
                torch.set_num_threads(threads)
            encoder = TorchEncoder(AutoModelForSequenceClassification.from_pretrained(model_dir).eval())
        elif (model_dir / ONNX_FILE).is_file():
            encoder = OnnxEncoder(model_dir / ONNX_FILE, threads)
        else:  # trained before the ONNX export existed
            raise ModelNotFoundError(model_dir, f"no {ONNX_FILE}: run `shopbot train` to export it")
        detector_file = RUNTIMES[runtime]
        detector = OutOfScopeDetector.load(model_dir, detector_file) if (model_dir / detector_file).is_file() else None
        scope = metadata.get("out_of_scope", {}).get(runtime, {})
        return cls(
            encoder,
            AutoTokenizer.from_pretrained(model_dir),
            metadata["labels"],
            products=products,
            metadata=metadata,
            max_length=int(metadata.get("hyperparameters", {}).get("max_length", 64)),
            detector=detector,
            class_threshold=scope.get("class_threshold"),
        )

    @property
    def encoder(self) -> Encoder:
        """What runs the model: `TorchEncoder` or `OnnxEncoder`."""
        return self._encoder

    def with_encoder(self, encoder: Encoder) -> IntentClassifier:
        """The same classifier (tokenizer, labels, thresholds, detector) in front of another engine
        for the same weights and runtime: what a benchmark comparing engines needs."""
        twin = copy.copy(self)
        twin._encoder = encoder
        return twin

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
        """The out-of-scope detector saved with the model for this runtime, if any."""
        return self._detector

    def parse(self, text: str) -> Parse:
        """Classify one message."""
        return self.parse_batch([text])[0]

    def parse_batch(self, texts: Sequence[str]) -> list[Parse]:
        """Classify many messages in length-sorted batches; parses come back in the order of `texts`."""
        if not texts:
            return []
        probabilities, embeddings = self._forward(texts)  # (n, labels), (n, hidden)
        scores = self._detector.score(embeddings).tolist() if self._detector else [None] * len(texts)
        return list(map(self._to_parse, texts, probabilities, scores))

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """The label probabilities alone, (len(texts), labels) in `labels` order: no entities, no
        out-of-scope score (what a classifier of other categories, such as the safety model, needs)."""
        return self._forward(texts)[0] if texts else np.zeros((0, len(self._labels)), np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The sentence embeddings that feed the classifier head, (len(texts), hidden) float32."""
        return self._forward(texts)[1]

    def _forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and head-input embeddings for every text.

        Messages are sorted by token count and cut into batches by `length_groups`: a batch pads
        every message to its longest, so "thanks" batched with a 60-token complaint costs 60
        tokens of arithmetic (with int8 the padded rows also widen the activations' range).
        """
        encodings = self._tokenize.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        groups = [order[start:stop] for start, stop in
                  length_groups(lengths[order].tolist(), self._batch_size, min_groups=self._encoder.workers)]
        batches = []
        for chosen in groups:
            ids = np.full((len(chosen), lengths[chosen[-1]]), self._pad_id, dtype=np.int64)  # (batch, tokens)
            mask = np.zeros_like(ids)
            for row, i in enumerate(chosen):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            batches.append((ids, mask))
        probabilities = np.zeros((len(texts), len(self._labels)), dtype=np.float32)
        embeddings: np.ndarray | None = None
        for chosen, (logits, pooled) in zip(groups, self._encoder.map(batches), strict=True):
            if embeddings is None:  # (batch, labels), (batch, hidden)
                embeddings = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            probabilities[chosen] = _softmax(logits)
            embeddings[chosen] = pooled
        return probabilities, embeddings if embeddings is not None else np.zeros((0, 0), np.float32)

    def _to_parse(self, text: str, probabilities: np.ndarray, ood_score: float | None) -> Parse:
        top = np.argsort(-probabilities, kind="stable")[:RANKING_SIZE]
        ranking = tuple(IntentScore(self._labels[i], float(probabilities[i])) for i in top)
        far = self._detector is not None and ood_score is not None and ood_score > self._detector.threshold
        unsure = (
            self._oos_index is not None
            and self._class_threshold is not None
            and float(probabilities[self._oos_index]) > self._class_threshold
        )
        language = foreign_language(text)  # the model knows English only
        metadata: dict[str, Any] = {} if ood_score is None else {"ood_score": ood_score}
        if language is not None:
            metadata["language"] = language
        unreadable = not _has_words(text) or language is not None
        return Parse(
            text=text,
            intent=ranking[0],
            ranking=ranking,
            entities=extract_entities(text, self._products),
            out_of_scope=far or unsure or ranking[0].name == OUT_OF_SCOPE or unreadable,
            metadata=metadata,
        )


def length_groups(
    lengths: Sequence[int], max_batch: int, overhead: int = CALL_OVERHEAD_TOKENS, min_groups: int = 1
) -> list[tuple[int, int]]:
    """Cut ascending token `lengths` into consecutive batches of at most `max_batch` at least cost.

    A batch costs `overhead` (the fixed price of one forward call, in padded tokens) plus its
    size times its longest message. Dynamic programming over the cut points, O(n * max_batch):
    a flock of short messages shares one call, a long one gets its own instead of padding them.
    Then, while there are fewer than `min_groups` batches (an encoder running that many at once),
    the costliest batch of two messages or more is halved: an idle worker gains nothing from a
    cheaper plan.
    """
    n = len(lengths)
    best = [0] + [0] * n  # best[i]: cheapest cost of the first i messages
    cut = [0] * (n + 1)  # cut[i]: where the last batch of that cheapest split starts
    for i in range(1, n + 1):
        starts = range(max(0, i - max_batch), i)
        best[i], cut[i] = min((best[j] + overhead + (i - j) * lengths[i - 1], j) for j in starts)
    groups: list[tuple[int, int]] = []
    while n:
        groups.append((cut[n], n))
        n = cut[n]
    groups.reverse()
    while len(groups) < min_groups:
        shareable = [(start, stop) for start, stop in groups if stop - start >= 2]
        if not shareable:
            break
        start, stop = max(shareable, key=lambda g: (g[1] - g[0]) * lengths[g[1] - 1])
        middle = (start + stop) // 2
        at = groups.index((start, stop))
        groups[at : at + 1] = [(start, middle), (middle, stop)]
    return groups


def _has_words(text: str) -> bool:
    """Does `text` hold a letter? Digits, codes and emoji alone ask for nothing the model can read.

    (The router still looks up a bare order number, and takes "12345" as the answer when the
    bot has just asked for one; both rules come before the out-of-scope check.)
    """
    return any(ch.isalpha() for ch in text)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, (batch, labels)."""
    shifted = np.exp(logits.astype(np.float32) - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
