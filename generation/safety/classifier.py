"""The harmful-content classifier: MiniLM fine-tuned to tell safe text from toxic, hateful, sexual,
violent and self-harm text, served like the intent classifier (int8 ONNX Runtime).

It is the intent classifier's own pipeline with categories for intents: `shopbot train safety`
fine-tunes it on the Davidson et al. tweets (hate / offensive / neither) and on
`data/safety/train.yml` (shop replies and messages, including the hard cases a word list gets
wrong: "Killer Heels", "to die for"), so the model reads context instead of keywords.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from nlu.classifier import IntentClassifier
from nlu.dataset import Example

CALIBRATION_FILE = "shopbot_safety.json"
DEFAULT_KEEP_RATE = 0.99  # the share of held-out safe texts the calibrated threshold lets through
HARMFUL = ("toxic", "hate", "sexual", "violence", "self_harm")
SAFE = ("safe_reply", "safe_message")
# Davidson's classes: 0 hate speech, 1 offensive language, 2 neither.
_DAVIDSON = {"0": "hate", "1": "toxic", "2": "safe_message"}


class HarmClassifier:
    """Scores per harmful category (0..1) for texts.

    A text is harmful when the harmful categories together reach `threshold` (the model spreads
    a threat over "violence" and "toxic"; what matters first is that it is not safe); set at
    training time on held-out safe texts, see `calibrate`.
    """

    def __init__(self, classifier: IntentClassifier, threshold: float = 0.5) -> None:
        unknown = set(classifier.labels) - set(HARMFUL) - set(SAFE)
        if unknown:
            raise ValueError(f"not a safety model: unexpected labels {sorted(unknown)}")
        self._classifier = classifier
        self.threshold = threshold

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 0) -> HarmClassifier:
        calibration = Path(model_dir) / CALIBRATION_FILE
        threshold = json.loads(calibration.read_text())["threshold"] if calibration.is_file() else 0.5
        return cls(IntentClassifier.load(model_dir, threads=threads), threshold)

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, the probability of every harmful category."""
        columns = [self._classifier.labels.index(c) if c in self._classifier.labels else None for c in HARMFUL]
        return [{c: float(row[i]) if i is not None else 0.0 for c, i in zip(HARMFUL, columns, strict=True)}
                for row in self._classifier.probabilities(texts)]


def calibrate(model_dir: Path, validation: Sequence[Example],
              keep_rate: float = DEFAULT_KEEP_RATE) -> dict[str, object]:
    """Set the threshold on the total harm score so that `keep_rate` of the held-out safe texts pass;
    saved next to the model with the recall it gives on the held-out harmful texts."""
    model = HarmClassifier.load(model_dir)
    totals = np.array([sum(s.values()) for s in model.scores([e.text for e in validation])])
    labels = np.array([e.intent for e in validation])
    safe = totals[np.isin(labels, SAFE)]
    # Just above the quantile: a text scoring exactly it passes (the filter blocks from the threshold up).
    threshold = float(min(max(np.quantile(safe, keep_rate) + 1e-6, 0.05), 0.95)) if len(safe) else 0.5
    report: dict[str, object] = {
        "threshold": threshold, "keep_rate": keep_rate, "validation_safe": int(len(safe)),
        "validation_flagged": {c: round(float(np.mean(totals[labels == c] >= threshold)), 3)
                               for c in sorted(set(labels.tolist()))},
    }
    (model_dir / CALIBRATION_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def training_examples(davidson_csv: Path | None, written: Path, davidson_per_class: int = 1500,
                      seed: int = 13) -> list[Example]:
    """The written examples, plus up to `davidson_per_class` tweets of each Davidson class.

    The tweets are sampled evenly (the set is 77 % "offensive"), so the model does not learn
    that most text is offensive.
    """
    categories = yaml.safe_load(written.read_text(encoding="utf-8"))["categories"]
    examples = [Example(str(text), category) for category, texts in categories.items() for text in texts]
    if davidson_csv is not None:
        by_class: dict[str, list[str]] = {}
        with davidson_csv.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                by_class.setdefault(_DAVIDSON[row["class"]], []).append(row["tweet"])
        rng = random.Random(seed)
        for category, tweets in sorted(by_class.items()):
            examples += [Example(t, category) for t in rng.sample(tweets, min(davidson_per_class, len(tweets)))]
    return examples
