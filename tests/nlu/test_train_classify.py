"""Train a tiny random BERT end to end, serve it, and evaluate it (see `tiny_model`)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nlu import Parse
from nlu.classifier import METADATA_FILE, IntentClassifier, ModelNotFoundError
from nlu.dataset import Example
from nlu.evaluate import evaluate_intents, intent_report
from nlu.ood import DETECTOR_FILE
from nlu.runtime import ONNX_FILE
from nlu.train import (
    BUCKET_POOL,
    TrainConfig,
    TrainResult,
    _batch_order,
    bundled_base_model,
    resolve_base_model,
    train_intents,
)
from tests.nlu.tiny_model import keyword_examples, tiny_training


def test_training_writes_a_complete_artifact(trained: TrainResult) -> None:
    files = {p.name for p in trained.output_dir.iterdir()}

    assert {"config.json", "model.safetensors", "tokenizer.json", METADATA_FILE, DETECTOR_FILE, ONNX_FILE,
            "ood.onnx-int8.npz"} <= files
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in trained.output_dir.iterdir())  # others may serve it
    assert not [p for p in trained.output_dir.parent.iterdir() if p.name.startswith(".")]
    assert trained.labels == ("greet", "request_refund", "track_order")
    assert (trained.n_train, trained.n_validation) == (102, 18)


def test_metadata_records_labels_data_and_metrics(trained: TrainResult, tiny_base: Path) -> None:
    metadata = json.loads((trained.output_dir / METADATA_FILE).read_text())

    assert metadata["labels"] == list(trained.labels)
    assert metadata["base_model"] == str(tiny_base)
    assert metadata["n_examples"] == 120
    assert len(metadata["data_hash"]) == 64
    assert metadata["hyperparameters"]["epochs"] == 2
    assert metadata["hyperparameters"]["learning_rate"] == 1e-2
    assert set(metadata["metrics"]) == {"val_accuracy", "val_macro_f1", "served_val_accuracy", "train_seconds",
                                        "served_val_accuracy_batched", "served_val_accuracy_one_by_one"}
    served = metadata["metrics"]
    # the served graph is scored as it serves: in batches and one message at a time
    assert served["served_val_accuracy"] == pytest.approx(
        (served["served_val_accuracy_batched"] + served["served_val_accuracy_one_by_one"]) / 2)
    assert abs(metadata["metrics"]["served_val_accuracy"] - trained.val_accuracy) <= 0.1
    assert metadata["metrics"]["val_accuracy"] == trained.val_accuracy
    assert {"torch", "transformers"} <= set(metadata["versions"])
    assert metadata["created_at"].endswith("+00:00")
    assert [h["epoch"] for h in metadata["history"]] == [1, 2]


def test_served_model_parses_into_a_valid_ranking(trained: TrainResult) -> None:
    classifier = IntentClassifier.load(trained.output_dir, products=["Slim Jeans"])

    parse = classifier.parse("where is my parcel, order 10023, the slim jeans")

    assert isinstance(parse, Parse)
    assert classifier.labels == trained.labels
    assert parse.intent == parse.ranking[0]
    assert sorted(s.name for s in parse.ranking) == sorted(trained.labels)
    assert sum(s.confidence for s in parse.ranking) == pytest.approx(1.0, abs=1e-4)
    assert [s.confidence for s in parse.ranking] == sorted((s.confidence for s in parse.ranking), reverse=True)
    assert parse.entity("order_id") == "10023"
    assert parse.entity("product") == "Slim Jeans"
    assert parse.metadata["ood_score"] >= 0.0  # whether it is out of scope: test_ood.py
    assert classifier.metadata["labels"] == list(trained.labels)


def test_trained_model_learnt_the_keywords(trained: TrainResult) -> None:
    classifier = IntentClassifier.load(trained.output_dir)
    examples = keyword_examples()

    parses = classifier.parse_batch([e.text for e in examples])

    accuracy = sum(p.intent.name == e.intent for p, e in zip(parses, examples, strict=True)) / len(examples)
    assert accuracy >= 0.6  # chance is 1/3
    assert trained.val_accuracy is not None
    assert trained.val_accuracy > 0.5


def test_batch_and_single_parses_agree(trained: TrainResult) -> None:
    """Exactly in fp32 (int8 quantises activations per batch: tests/nlu/test_serving.py)."""
    classifier = IntentClassifier.load(trained.output_dir, runtime="torch")
    texts = ["hello there", "my money back", "parcel late", ""]

    batch = classifier.parse_batch(texts)

    assert [p.text for p in batch] == texts
    for text, parse in zip(texts, batch, strict=True):
        single = classifier.parse(text)
        assert single.intent.name == parse.intent.name
        assert single.intent.confidence == pytest.approx(parse.intent.confidence, abs=1e-5)
    assert classifier.parse_batch([]) == []


def test_retraining_replaces_the_artifact_and_is_reproducible(
    trained: TrainResult, tiny_base: Path, tmp_path: Path
) -> None:
    config = tiny_training(tiny_base)
    output = tmp_path / "intents"
    (output / "stale").mkdir(parents=True)

    again = train_intents(keyword_examples(), output, config, progress=False)

    assert not (output / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intents"]
    assert again.val_accuracy == trained.val_accuracy
    first = json.loads((trained.output_dir / METADATA_FILE).read_text())["history"]
    assert json.loads((output / METADATA_FILE).read_text())["history"] == first


def test_length_buckets_pad_less_and_still_use_every_message_once() -> None:
    rng = random.Random(3)
    lengths = [rng.choice([4, 8, 16, 48]) for _ in range(4 * 8 * BUCKET_POOL + 5)]
    plain = _batch_order(lengths, TrainConfig(batch_size=8), torch.Generator().manual_seed(1))
    config = TrainConfig(batch_size=8, length_buckets=True)
    bucketed = _batch_order(lengths, config, torch.Generator().manual_seed(1))

    for order in (plain, bucketed):
        assert sorted(i for batch in order for i in batch) == list(range(len(lengths)))

    def padded(order: list[list[int]]) -> int:
        return sum(len(batch) * max(lengths[i] for i in batch) for batch in order)

    assert padded(bucketed) < 0.6 * padded(plain)
    again = _batch_order(lengths, config, torch.Generator().manual_seed(1))
    assert again == bucketed  # seeded: reproducible
    maxima = [max(lengths[i] for i in batch) for batch in bucketed]
    assert maxima != sorted(maxima)  # the batches themselves are shuffled, not served shortest first


def test_bf16_training_learns_too(tiny_base: Path, tmp_path: Path) -> None:
    config = replace(tiny_training(tiny_base), precision="bf16", length_buckets=True)

    result = train_intents(keyword_examples(), tmp_path / "bf16", config, progress=False)

    assert result.val_accuracy is not None and result.val_accuracy >= 0.8
    metadata = json.loads((tmp_path / "bf16" / METADATA_FILE).read_text())
    assert metadata["hyperparameters"]["precision"] == "bf16"


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_training_needs_two_intents(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 intents"):
        train_intents([Example("hi", "greet")] * 4, tmp_path / "m", TrainConfig(str(tiny_base)))


def test_base_model_is_bundled_a_directory_or_a_hub_id(tiny_base: Path) -> None:
    assert (bundled_base_model() / "config.json").is_file()
    assert resolve_base_model("") == str(bundled_base_model())
    assert resolve_base_model(str(tiny_base)) == str(tiny_base.resolve())
    assert resolve_base_model("bert-base-uncased") == "bert-base-uncased"


def test_missing_model_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="shopbot train intents") as caught:
        IntentClassifier.load(tmp_path / "nowhere")

    assert caught.value.path == tmp_path / "nowhere"


def test_evaluation_writes_rasa_style_reports(trained: TrainResult, tmp_path: Path) -> None:
    classifier = IntentClassifier.load(trained.output_dir)
    examples = [*keyword_examples(5), Example("xyzzy", "greet"), Example("qwerty", "track_order")]

    report = evaluate_intents(classifier, examples, tmp_path / "reports")

    written = {p.name for p in (tmp_path / "reports").iterdir()}
    assert written == {
        "intent_report.json",
        "intent_errors.json",
        "intent_confusion_matrix.png",
        "intent_histogram.png",
    }
    for png in ("intent_confusion_matrix.png", "intent_histogram.png"):
        assert (tmp_path / "reports" / png).read_bytes().startswith(b"\x89PNG")
    rasa = json.loads((tmp_path / "reports" / "intent_report.json").read_text())
    assert {"accuracy", "macro avg", "weighted avg", *trained.labels} <= set(rasa)
    assert set(rasa["greet"]) == {"precision", "recall", "f1-score", "support", "confused_with"}
    assert rasa["accuracy"] == report.accuracy
    assert rasa["macro avg"]["f1-score"] == report.macro_f1
    errors = json.loads((tmp_path / "reports" / "intent_errors.json").read_text())
    assert len(errors) == round((1 - report.accuracy) * len(examples))
    for error in errors:
        assert set(error) == {"text", "intent", "predicted", "confidence"}
        assert error["intent"] != error["predicted"]


def test_report_figures_match_a_hand_computed_example() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "c", "c"]

    report = intent_report(truth, predicted)

    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1-score": pytest.approx(0.8),
        "support": 3,
        "confused_with": {"b": 1},
    }
    assert report["b"]["precision"] == pytest.approx(0.5)
    assert report["c"]["f1-score"] == pytest.approx(2 / 3)
    assert report["macro avg"]["f1-score"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["weighted avg"]["recall"] == pytest.approx(4 / 6)
    assert report["macro avg"]["support"] == 6


def test_an_intent_never_predicted_scores_zero_not_nan() -> None:
    report = intent_report(["a", "b"], ["a", "a"])

    assert report["b"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1-score": 0.0,
        "support": 1,
        "confused_with": {"a": 1},
    }


@pytest.mark.parametrize("text", ["987654321", "0000", "🙂🙂", "?!", "12/05"])
def test_a_message_without_a_letter_is_out_of_scope(trained: TrainResult, text: str) -> None:
    classifier = IntentClassifier.load(trained.output_dir)

    assert classifier.parse(text).out_of_scope
    assert classifier.parse_batch([text, "where is my parcel"])[0].out_of_scope
