"""Evaluate the intent classifier on labelled examples and write Rasa-style reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nlu.classifier import IntentClassifier
from nlu.dataset import Example

MAX_CONFUSIONS = 3  # most frequent wrong predictions listed per intent


@dataclass(frozen=True)
class IntentReport:
    """Headline figures of one evaluation; the details are in the files under `out_dir`."""

    accuracy: float
    macro_f1: float
    n_examples: int
    out_dir: Path


def evaluate_intents(classifier: IntentClassifier, examples: Sequence[Example], out_dir: str | Path) -> IntentReport:
    """Write intent_report.json, intent_errors.json and two plots; return the headline figures."""
    if not examples:
        raise ValueError("no examples to evaluate")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parses = classifier.parse_batch([e.text for e in examples])
    truth = [e.intent for e in examples]
    predicted = [p.intent.name for p in parses]
    confidence = np.array([p.intent.confidence for p in parses])
    report = intent_report(truth, predicted)
    _write_json(out / "intent_report.json", report)
    errors: list[dict[str, Any]] = [
        {
            "text": e.text,
            "intent": e.intent,
            "predicted": p.intent.name,
            "confidence": round(p.intent.confidence, 4),
        }
        for e, p in zip(examples, parses, strict=True)
        if e.intent != p.intent.name
    ]
    errors.sort(key=lambda error: -error["confidence"])  # confident mistakes matter most
    _write_json(out / "intent_errors.json", errors)
    labels, matrix = confusion_matrix(truth, predicted)
    _plot_confusion(labels, matrix, out / "intent_confusion_matrix.png")
    correct = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    _plot_histogram(confidence[correct], confidence[~correct], out / "intent_histogram.png")
    return IntentReport(report["accuracy"], report["macro avg"]["f1-score"], len(examples), out)


def confusion_matrix(truth: Sequence[str], predicted: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Labels (sorted union of both sides) and counts: rows are true, columns predicted."""
    labels = sorted(set(truth) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[t] for t in truth], [index[p] for p in predicted]), 1)
    return labels, matrix


def intent_report(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Per-intent precision/recall/F1/support/confused_with plus averages, as Rasa writes it."""
    labels, matrix = confusion_matrix(truth, predicted)
    hits = np.diag(matrix).astype(float)
    support, n_predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    # An intent never predicted (or never true) scores 0, as scikit-learn's zero_division=0.
    precision = np.divide(hits, n_predicted, out=np.zeros_like(hits), where=n_predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    report: dict[str, Any] = {}
    for i, label in enumerate(labels):
        wrong = [(int(matrix[i, j]), labels[j]) for j in range(len(labels)) if j != i]
        top = sorted((c for c in wrong if c[0] > 0), key=lambda c: (-c[0], c[1]))
        report[label] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": int(support[i]),
            "confused_with": {name: count for count, name in top[:MAX_CONFUSIONS]},
        }
    total = int(support.sum())
    report["accuracy"] = float(hits.sum() / total) if total else 0.0
    for name, weights in (("macro avg", np.ones(len(labels))), ("weighted avg", support)):
        share = weights / weights.sum() if weights.sum() else weights
        report[name] = {
            "precision": float(precision @ share),
            "recall": float(recall @ share),
            "f1-score": float(f1 @ share),
            "support": total,
        }
    return report


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _plot_confusion(labels: list[str], matrix: np.ndarray, path: Path) -> None:
    size = max(6.0, 0.45 * len(labels) + 3)  # grow with the label count so names stay legible
    figure = Figure(figsize=(size, size * 0.9), layout="constrained")  # no wasted margins
    FigureCanvasAgg(figure)  # Agg renders to files without a display or pyplot's global state
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.set_xlabel("predicted intent")
    axes.set_ylabel("true intent")
    axes.set_title("Intent confusion matrix")
    if len(labels) <= 40:  # beyond that the numbers overlap; the colours still tell
        threshold = matrix.max() / 2
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if count > threshold else "black"
                axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=7)
    figure.savefig(path, dpi=120)


def _plot_histogram(right: np.ndarray, wrong: np.ndarray, path: Path) -> None:
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bins = [i / 20 for i in range(21)]  # 0.05 wide
    axes.hist(
        [right, wrong],
        bins=bins,
        label=[f"correct ({len(right)})", f"wrong ({len(wrong)})"],
        color=["#2b8a3e", "#c92a2a"],
    )
    axes.set_xlabel("confidence of the predicted intent")
    axes.set_ylabel("messages")
    axes.set_title("Intent prediction confidence")
    axes.legend()
    figure.savefig(path, dpi=120)
