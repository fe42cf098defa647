"""The harmful-content classifier: MiniLM fine-tuned to tell safe text from toxic, hateful, sexual,
violent and self-harm text, served like the intent classifier (int8 ONNX Runtime).

It is the intent classifier's own pipeline with categories for intents: `shopbot train safety`
fine-tunes it on the Davidson et al. tweets (hate / offensive / neither) and on
`data/safety/train/*.yml` (shop replies and messages, including the hard cases a word list gets
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

from generation.safety.evaluate import Row
from nlu.classifier import IntentClassifier
from nlu.dataset import Example, load_examples

CALIBRATION_FILE = "shopbot_safety.json"
# The share of held-out safe replies the reply threshold lets through: a blocked reply is a wrong
# thing said in the shop's name, so the margin on the 1 % target is wide (on 150 development
# replies 0.99 and 0.995 are one reply apart).
DEFAULT_KEEP_RATE = 0.995
# ... and of safe shopper messages the message threshold lets through. A flagged message gets a
# calm reply instead of an answer, a missed threat or cry for help gets a shop answer: on the
# development set, 0.98 instead of 0.97 cost a third of the self-harm messages.
DEFAULT_INPUT_KEEP_RATE = 0.97
HARMFUL = ("toxic", "hate", "sexual", "violence", "self_harm")
SAFE = ("safe_reply", "safe_message")
# Davidson's classes: 0 hate speech, 1 offensive language, 2 neither.
_DAVIDSON = {"0": "hate", "1": "toxic", "2": "safe_message"}


class HarmClassifier:
    """Scores per harmful category (0..1) for texts.

    A text is harmful when the harmful categories together reach the threshold (the model spreads
    a threat over "violence" and "toxic"; what matters first is that it is not safe): `threshold`
    for replies, `input_threshold` for shoppers' messages; both set at training time on safe texts
    held out from training, see `calibrate`.
    """

    def __init__(self, classifier: IntentClassifier, threshold: float = 0.5,
                 input_threshold: float | None = None) -> None:
        unknown = set(classifier.labels) - set(HARMFUL) - set(SAFE)
        if unknown:
            raise ValueError(f"not a safety model: unexpected labels {sorted(unknown)}")
        self._classifier = classifier
        self.threshold = threshold
        self.input_threshold = threshold if input_threshold is None else input_threshold

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 0) -> HarmClassifier:
        calibration = Path(model_dir) / CALIBRATION_FILE
        saved = json.loads(calibration.read_text()) if calibration.is_file() else {}
        return cls(IntentClassifier.load(model_dir, threads=threads), saved.get("threshold", 0.5),
                   saved.get("input_threshold"))

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, the probability of every harmful category."""
        columns = [self._classifier.labels.index(c) if c in self._classifier.labels else None for c in HARMFUL]
        return [{c: float(row[i]) if i is not None else 0.0 for c, i in zip(HARMFUL, columns, strict=True)}
                for row in self._classifier.probabilities(texts)]


def calibrate(model_dir: Path, validation: Sequence[Example], keep_rate: float = DEFAULT_KEEP_RATE,
              input_keep_rate: float = DEFAULT_INPUT_KEEP_RATE, source: str = "held-out split") -> dict[str, object]:
    """Set the thresholds on the total harm score: `keep_rate` of the safe replies in `validation`
    pass the reply threshold, `input_keep_rate` of its safe messages the message threshold (a kind
    missing from `validation` takes the other's). Saved next to the model with the share flagged
    in every category at each threshold."""
    model = HarmClassifier.load(model_dir)
    totals = np.array([sum(s.values()) for s in model.scores([e.text for e in validation])])
    labels = np.array([e.intent for e in validation])

    def threshold(safe: np.ndarray, keep: float) -> float | None:
        # Just above a score that at least `keep` of them reach: that text and every lower one pass
        # (blocking starts at the threshold). An interpolated quantile would fall between two
        # scores and, on a small set, flag one text too many (5 of 90 at keep 0.95).
        return float(min(max(np.quantile(safe, keep, method="higher") + 1e-6, 0.05), 0.95)) if len(safe) else None

    replies = threshold(totals[labels == "safe_reply"], keep_rate)
    messages = threshold(totals[labels == "safe_message"], input_keep_rate)
    output = replies if replies is not None else messages if messages is not None else 0.5
    input_ = messages if messages is not None else output

    def flagged(at: float) -> dict[str, float]:
        return {c: round(float(np.mean(totals[labels == c] >= at)), 3) for c in sorted(set(labels.tolist()))}

    report: dict[str, object] = {
        "threshold": output, "input_threshold": input_, "keep_rate": keep_rate, "input_keep_rate": input_keep_rate,
        "calibrated_on": source, "safe_replies": int((labels == "safe_reply").sum()),
        "safe_messages": int((labels == "safe_message").sum()),
        "flagged_at_threshold": flagged(output), "flagged_at_input_threshold": flagged(input_),
    }
    (model_dir / CALIBRATION_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def development_examples(rows: Sequence[Row]) -> list[Example]:
    """A labelled development CSV (`generation.safety.evaluate.load_rows`) as calibration examples:
    safe outputs are replies, safe inputs messages, the harmful categories as they are; the
    rule-checked categories (pii, injection, ...) say nothing about the classifier and are left out."""
    examples = []
    for row in rows:
        if row.label == "safe":
            examples.append(Example(row.text, "safe_reply" if row.direction == "output" else "safe_message"))
        elif row.category in HARMFUL:
            examples.append(Example(row.text, row.category))
    return examples


def training_examples(davidson_csv: Path | None, written: Path, davidson_per_class: int = 1500,
                      seed: int = 13, shop_messages: Path | None = None) -> list[Example]:
    """The written examples (one YAML file, or every `*.yml` in a directory), plus up to
    `davidson_per_class` tweets of each Davidson class, plus every example of the shop's own NLU
    data (`shop_messages`, Rasa YAML) as a safe message.

    The tweets are sampled evenly (the set is 77 % "offensive"), so the model does not learn
    that most text is offensive. The NLU examples are how this shop's shoppers write, short ones
    included ("I want a human", "refund?"): a model that never saw them scored "I want a human"
    0.99 sexual and would have answered the handoff request with the guard's calm reply.
    """
    files = sorted(written.glob("*.yml")) if written.is_dir() else [written]
    if not files:
        raise ValueError(f"no *.yml training files in {written}")
    examples = []
    for file in files:
        categories = yaml.safe_load(file.read_text(encoding="utf-8"))["categories"]
        unknown = set(categories) - set(HARMFUL) - set(SAFE)
        if unknown:
            raise ValueError(f"{file}: unknown categories {sorted(unknown)}")
        examples += [Example(str(text), category) for category, texts in categories.items() for text in texts]
    if davidson_csv is not None:
        by_class: dict[str, list[str]] = {}
        with davidson_csv.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                by_class.setdefault(_DAVIDSON[row["class"]], []).append(row["tweet"])
        rng = random.Random(seed)
        for category, tweets in sorted(by_class.items()):
            examples += [Example(t, category) for t in rng.sample(tweets, min(davidson_per_class, len(tweets)))]
    if shop_messages is not None:
        examples += [Example(e.text, "safe_message") for e in load_examples(shop_messages)]
    return examples
