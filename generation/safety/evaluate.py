"""`shopbot evaluate safety`: the filter against a labelled CSV, per category.

The CSV has `text,label` (label `safe` or `unsafe`) and optionally `category` and `direction`
(`input`: a message someone wrote, checked by the input guard; `output`, the default: a reply,
checked by the reply filter). A text counts as flagged when the filter found any category in it,
so an unsafe text that was masked (a foreign card number) or blocked is caught, and a safe text
that was touched (a link removed) is a false positive.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from generation.safety.verdict import SafetyFilter

LABELS = ("safe", "unsafe")


@dataclass(frozen=True)
class Row:
    text: str
    label: str
    category: str
    direction: str


@dataclass(frozen=True)
class CategoryScore:
    category: str
    label: str
    n: int
    flagged: int

    @property
    def rate(self) -> float:
        """Recall for an unsafe category, false-positive rate for a safe one."""
        return self.flagged / self.n if self.n else 0.0


@dataclass(frozen=True)
class SafetyReport:
    categories: tuple[CategoryScore, ...]
    precision: float
    recall: float
    false_positive_rate: float
    ms_per_text: float
    misses: tuple[tuple[str, str, str], ...]  # (category, text, what the filter found)

    def lines(self) -> list[str]:
        out = ["| category | label | texts | flagged | recall / false-positive rate |", "|---|---|---|---|---|"]
        for c in self.categories:
            measure = "recall" if c.label == "unsafe" else "false-positive rate"
            out.append(f"| {c.category} | {c.label} | {c.n} | {c.flagged} | {measure} {c.rate:.3f} |")
        out += ["", f"precision: {self.precision:.3f}", f"recall: {self.recall:.3f}",
                f"false_positive_rate: {self.false_positive_rate:.3f}", f"ms_per_text: {self.ms_per_text:.2f}"]
        return out


def load_rows(path: Path) -> list[Row]:
    """The labelled texts; a clear ValueError for a file that is not such a CSV."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: need a CSV with the columns text,label (optional: category, direction)")
        rows = []
        for number, row in enumerate(reader, start=2):
            label = (row.get("label") or "").strip()
            if label not in LABELS:
                raise ValueError(f"{path}:{number}: label must be 'safe' or 'unsafe', got {label!r}")
            direction = (row.get("direction") or "output").strip()
            if direction not in ("input", "output"):
                raise ValueError(f"{path}:{number}: direction must be 'input' or 'output', got {direction!r}")
            rows.append(Row(row["text"], label, (row.get("category") or label).strip(), direction))
    return rows


def evaluate_safety(safety: SafetyFilter, rows: Sequence[Row]) -> SafetyReport:
    started = time.perf_counter()
    verdicts = [safety.check_input(r.text) if r.direction == "input" else safety.check_output(r.text) for r in rows]
    elapsed = time.perf_counter() - started
    flagged = [v.flagged for v in verdicts]
    scores = []
    for category in sorted({r.category for r in rows}):
        members = [i for i, r in enumerate(rows) if r.category == category]
        labels = {rows[i].label for i in members}
        scores.append(CategoryScore(category, "/".join(sorted(labels)), len(members), sum(flagged[i] for i in members)))
    unsafe = [f for f, r in zip(flagged, rows, strict=True) if r.label == "unsafe"]
    safe = [f for f, r in zip(flagged, rows, strict=True) if r.label == "safe"]
    caught = sum(unsafe)
    misses = tuple((r.category, r.text, ", ".join(v.categories) or "nothing")
                   for r, v, f in zip(rows, verdicts, flagged, strict=True) if f != (r.label == "unsafe"))
    return SafetyReport(
        categories=tuple(scores),
        precision=caught / (caught + sum(safe)) if caught + sum(safe) else 0.0,
        recall=caught / len(unsafe) if unsafe else 0.0,
        false_positive_rate=sum(safe) / len(safe) if safe else 0.0,
        ms_per_text=elapsed * 1e3 / len(rows) if rows else 0.0,
        misses=misses,
    )
