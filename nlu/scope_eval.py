"""How well the out-of-scope flag separates support messages from everything else."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from nlu.classifier import IntentClassifier


@dataclass(frozen=True)
class ScopeReport:
    in_scope: int
    out_of_scope: int
    in_scope_flagged: float  # share of support messages wrongly flagged out of scope
    out_of_scope_flagged: float  # share of out-of-scope messages caught
    auroc: float | None  # None when the model has no out-of-scope detector


def load_messages(path: Path) -> list[str]:
    """A YAML file with a `messages:` list, or plain text with one message per line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise ValueError(f"{path}: expected a mapping with a 'messages' list")
        return [str(m) for m in data["messages"]]
    return [line.strip() for line in text.splitlines() if line.strip()]


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U)."""
    scores = np.concatenate([negatives, positives])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    positive_ranks = ranks[len(negatives):].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def scope_report(classifier: IntentClassifier, in_scope: Sequence[str], out_of_scope: Sequence[str],
                 out_dir: Path | None = None) -> ScopeReport:
    """Flag rates on both sets and the AUROC of the out-of-scope score; optionally written as JSON."""
    inside = classifier.parse_batch(list(in_scope))
    outside = classifier.parse_batch(list(out_of_scope))
    scores_in = [p.metadata.get("ood_score") for p in inside]
    scores_out = [p.metadata.get("ood_score") for p in outside]
    has_scores = all(s is not None for s in scores_in + scores_out)
    report = ScopeReport(
        in_scope=len(inside),
        out_of_scope=len(outside),
        in_scope_flagged=float(np.mean([p.out_of_scope for p in inside])),
        out_of_scope_flagged=float(np.mean([p.out_of_scope for p in outside])),
        auroc=auroc(np.array(scores_in), np.array(scores_out)) if has_scores else None,
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "out_of_scope_report.json").write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    return report
