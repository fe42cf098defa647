"""Training data for the intent classifier: Rasa 3 NLU YAML or CSV, hashing and splitting."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlu.parse import Entity

# `[value](entity)` or `[value]{"entity": "x", "value": "canonical"}`; group 2 or 3 says which.
_ANNOTATION = re.compile(r"\[([^\[\]]+)\](?:\(([^()]+)\)|(\{[^{}]*\}))")
_INTENT_COLUMNS = ("intent", "category")  # BANKING77 and HWU64 CSVs call it "category"


class DatasetError(ValueError):
    """A training file that cannot be read; the message names the file and the place."""


@dataclass(frozen=True)
class Example:
    """One labelled message; entity offsets index into `text` (annotations stripped)."""

    text: str
    intent: str
    entities: tuple[Entity, ...] = ()


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last `nlu:`."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: list[Any] = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep=deep)


def load_examples(path: str | Path) -> list[Example]:
    """Read labelled examples from a `.yml`/`.yaml`/`.csv` file, or a folder of them.

    In a folder, YAML files without an `nlu:` key (responses, catalogue ...) are skipped, as
    Rasa does with its `data/` folder; a single file must have one.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml", ".csv"))
        return [example for file in files for example in _load_file(file, in_folder=True)]
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return _load_file(path, in_folder=False)


def _load_file(path: Path, in_folder: bool) -> list[Example]:
    return _load_csv(path) if path.suffix == ".csv" else _load_yaml(path, in_folder)


def _load_yaml(path: Path, in_folder: bool) -> list[Example]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise DatasetError(f"{path}:{where} invalid YAML: {error}") from error
    if in_folder and not (isinstance(document, dict) and "nlu" in document):
        return []
    if not isinstance(document, dict) or not isinstance(document.get("nlu"), list):
        raise DatasetError(f"{path}: expected a mapping with an `nlu:` list")
    examples: list[Example] = []
    for block in document["nlu"]:
        if isinstance(block, dict) and "intent" in block:
            examples.extend(_intent_examples(path, block))
        elif not (isinstance(block, dict) and block.keys() & {"synonym", "regex", "lookup"}):
            raise DatasetError(f"{path}: unexpected `nlu:` entry {str(block)[:60]!r}")
    return examples


def _intent_examples(path: Path, block: dict[str, Any]) -> list[Example]:
    intent = block["intent"]
    if not isinstance(intent, str) or not intent.strip():
        raise DatasetError(f"{path}: intent name must be a non-empty string, got {intent!r}")
    raw = block.get("examples")
    if isinstance(raw, str):
        lines = [line.strip() for line in raw.splitlines() if line.strip()]
        if bad := [line for line in lines if not line.startswith("- ")]:
            raise DatasetError(f"{path}: intent {intent!r}: example not a `- ` item: {bad[0]!r}")
        items: list[Any] = [line[2:] for line in lines]
    elif isinstance(raw, list):  # the long form: `- text: ...` with optional metadata
        items = [item.get("text") if isinstance(item, dict) else item for item in raw]
    else:
        raise DatasetError(f"{path}: intent {intent!r} has no `examples:`")
    examples = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise DatasetError(f"{path}: intent {intent!r}: empty or non-text example {item!r}")
        try:
            text, entities = strip_annotations(item.strip())
        except (ValueError, TypeError) as error:
            raise DatasetError(f"{path}: intent {intent!r}: {error}") from error
        examples.append(Example(text, intent.strip(), entities))
    return examples


def strip_annotations(annotated: str) -> tuple[str, tuple[Entity, ...]]:
    """Remove Rasa entity markup, returning the plain text and the entities found in it."""
    parts: list[str] = []
    entities: list[Entity] = []
    length, last = 0, 0
    for match in _ANNOTATION.finditer(annotated):
        parts.append(annotated[last : match.start()])
        length += match.start() - last
        surface, name, value = match.group(1), match.group(2), match.group(1)
        if match.group(3) is not None:
            name, value = _json_annotation(match.group(3), surface)
        # `(entity:synonym)` is Rasa 2 shorthand for a synonym value; keep it working.
        name, _, synonym = name.partition(":")
        entities.append(Entity(name.strip(), synonym or value, length, length + len(surface)))
        parts.append(surface)
        length += len(surface)
        last = match.end()
    text = "".join(parts) + annotated[last:]
    if re.search(r"\]\(|\]\{", text):
        raise ValueError(f"malformed entity annotation in {annotated!r}")
    return text, tuple(entities)


def _json_annotation(raw: str, surface: str) -> tuple[str, str]:
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid entity JSON {raw!r}: {error.msg}") from error
    if not isinstance(spec, dict) or not isinstance(spec.get("entity"), str):
        raise TypeError(f"entity JSON {raw!r} needs an `entity` string")
    return spec["entity"], str(spec.get("value", surface))


def _load_csv(path: Path) -> list[Example]:
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: Excel writes a BOM
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
        label = next((columns[c] for c in _INTENT_COLUMNS if c in columns), None)
        if "text" not in columns or label is None:
            raise DatasetError(f"{path}: line 1: header needs `text` and `intent` (or `category`)")
        examples = []
        for row in reader:
            text, intent = (row.get(columns["text"]) or "").strip(), (row.get(label) or "").strip()
            if not text or not intent:
                raise DatasetError(f"{path}: line {reader.line_num}: empty text or intent")
            examples.append(Example(text, intent))
    return examples


def data_hash(examples: Sequence[Example]) -> str:
    """A sha256 over the sorted (text, intent) pairs: the same data in any order, the same hash."""
    pairs = sorted((e.text, e.intent) for e in examples)
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


def stratified_split(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split per intent into (train, validation); every intent with >= 2 examples is in both."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    train: list[Example] = []
    validation: list[Example] = []
    for intent in sorted(by_intent):
        # Sorting first makes the split independent of file order; a per-intent seed keeps one
        # intent's split unchanged when another intent gains examples.
        group = sorted(by_intent[intent], key=lambda e: e.text)
        random.Random(f"{seed}:{intent}").shuffle(group)
        n_validation = min(max(round(len(group) * fraction), 1), len(group) - 1)
        validation.extend(group[:n_validation])
        train.extend(group[n_validation:])
    return train, validation
