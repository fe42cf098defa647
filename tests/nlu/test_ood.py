"""Out-of-scope detection: the detector on hand-made embeddings, then saved, loaded and served."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from nlu.classifier import METADATA_FILE, RUNTIMES, IntentClassifier
from nlu.dataset import Example
from nlu.ood import DETECTOR_FILE, OutOfScopeDetector
from nlu.train import TrainResult, train_intents
from tests.nlu.tiny_model import keyword_examples, tiny_training

CENTRES = np.array([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [0.0, 10.0, 0.0, 0.0]])


def clusters(per_intent: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three intents as unit-variance blobs in 4 dimensions, 10 apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CENTRES)), per_intent)
    return CENTRES[labels] + rng.normal(size=(len(labels), 4)), labels


def test_score_is_the_mahalanobis_distance_to_the_nearest_intent() -> None:
    embeddings, labels = clusters(200, seed=0)
    detector = OutOfScopeDetector.fit(embeddings, labels)
    points = np.array([[10.0, 0.0, 0.0, 0.0], [5.0, 5.0, 3.0, -4.0], [0.0, 0.0, 40.0, 0.0]])

    scores = detector.score(points)

    expected = [min((p - m) @ detector.precision @ (p - m) for m in detector.means) for p in points]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-4)  # its large product runs in float32
    np.testing.assert_allclose(detector.means, CENTRES, atol=0.2)
    assert scores[0] < 0.5 < 20 < scores[1] < scores[2]  # at a mean, between intents, far away
    assert 0.0 <= detector.shrinkage <= 1.0


def test_threshold_keeps_the_asked_share_of_held_out_messages() -> None:
    embeddings, labels = clusters(100, seed=1)
    held_out, _ = clusters(100, seed=2)  # 300 unseen in-scope messages

    detector = OutOfScopeDetector.fit(embeddings, labels).calibrate(held_out, keep_rate=0.9)

    kept = ~detector.is_out_of_scope(detector.score(held_out))
    assert kept.mean() == detector.calibration_keep_rate == pytest.approx(0.9, abs=1 / 300)
    assert kept.mean() >= 0.9
    assert detector.n_calibration == 300
    assert detector.is_out_of_scope(detector.score(CENTRES + [0, 0, 30, 0])).all()
    assert not detector.is_out_of_scope(detector.score(CENTRES)).any()


def test_an_uncalibrated_detector_flags_nothing() -> None:
    detector = OutOfScopeDetector.fit(*clusters(20, seed=3))

    assert detector.threshold == math.inf
    assert not detector.is_out_of_scope(detector.score(np.full((1, 4), 1e6))).any()
    with pytest.raises(ValueError, match="keep rate"):
        detector.calibrate(CENTRES, keep_rate=0.0)


def test_shrinkage_makes_fewer_messages_than_dimensions_usable() -> None:
    rng = np.random.default_rng(4)
    labels = np.arange(12) % 3
    embeddings = rng.normal(size=(12, 64)) + 5 * np.eye(3, 64)[labels]  # 12 messages, 64 dims

    detector = OutOfScopeDetector.fit(embeddings, labels)

    assert detector.shrinkage > 0.3  # the raw covariance has rank 9 of 64 and no inverse
    assert np.isfinite(detector.precision).all()
    assert detector.score(embeddings).max() < detector.score(embeddings + 10).min()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    embeddings, labels = clusters(50, seed=5)
    detector = OutOfScopeDetector.fit(embeddings, labels).calibrate(clusters(50, seed=6)[0])

    path = detector.save(tmp_path)
    loaded = OutOfScopeDetector.load(tmp_path)

    assert path == tmp_path / DETECTOR_FILE and [p.name for p in tmp_path.iterdir()] == [DETECTOR_FILE]
    assert loaded.summary() == detector.summary()
    assert loaded.summary()["keep_rate"] == 0.97  # the default
    np.testing.assert_array_equal(loaded.score(embeddings), detector.score(embeddings))


def test_training_saves_a_calibrated_detector(trained: TrainResult) -> None:
    blocks = json.loads((trained.output_dir / METADATA_FILE).read_text())["out_of_scope"]

    assert set(blocks) == set(RUNTIMES) == {"onnx-int8", "torch"}
    for runtime, block in blocks.items():  # one per runtime, each calibrated on its own scores
        saved = OutOfScopeDetector.load(trained.output_dir, RUNTIMES[runtime])
        assert block == {**saved.summary(), "calibrated_on": "validation"}  # no out_of_scope intent here
    block = blocks["torch"]
    detector = OutOfScopeDetector.load(trained.output_dir)
    assert block["method"] == "mahalanobis"
    assert block["n_calibration"] == trained.n_validation == 18
    assert block["calibration_keep_rate"] >= block["keep_rate"] == 0.97
    assert math.isfinite(block["threshold"]) and block["threshold"] > 0
    assert detector.means.shape == (3, 32)  # one mean per intent over the 32-wide head input


def test_served_verdicts_follow_the_saved_detector(trained: TrainResult, tmp_path: Path) -> None:
    """A hand-made detector around one training message's embedding: its own message is the
    nearest possible (score 0), a far-fetched one lies beyond a threshold set halfway to it."""
    artifact = shutil.copytree(trained.output_dir, tmp_path / "intents")
    inside, outside = keyword_examples()[0].text, "das wetter in hamburg morgen?"
    embeddings = IntentClassifier.load(artifact).embed([inside, outside]).astype(np.float64)
    gap = float(np.sum((embeddings[1] - embeddings[0]) ** 2))
    assert gap > 0
    OutOfScopeDetector(embeddings[:1], np.eye(embeddings.shape[1]), 0.0, threshold=gap / 2).save(
        artifact, RUNTIMES["onnx-int8"]
    )

    classifier = IntentClassifier.load(artifact)
    near, far = classifier.parse_batch([inside, outside])

    assert (near.out_of_scope, far.out_of_scope) == (False, True)
    assert near.metadata["ood_score"] == pytest.approx(0.0, abs=1e-6)
    assert far.metadata["ood_score"] == pytest.approx(gap, rel=1e-5)
    # Alone, the message is quantised on its own range: int8 moves its score a little, not across.
    assert classifier.parse(outside).metadata["ood_score"] == pytest.approx(gap, rel=0.05)


def test_most_training_messages_stay_in_scope(trained: TrainResult) -> None:
    # fp32: a 32-wide int8 model calibrated on 18 messages is too coarse to hold 10 % here.
    classifier = IntentClassifier.load(trained.output_dir, runtime="torch")

    parses = classifier.parse_batch([e.text for e in keyword_examples()])

    assert np.mean([p.out_of_scope for p in parses]) <= 0.1  # the threshold keeps 97% of unseen ones


def test_a_model_without_a_detector_still_loads_and_flags_nothing(trained: TrainResult, tmp_path: Path) -> None:
    artifact = shutil.copytree(trained.output_dir, tmp_path / "older")
    (artifact / RUNTIMES["onnx-int8"]).unlink()

    classifier = IntentClassifier.load(artifact)
    parse = classifier.parse("das wetter in hamburg morgen?")

    assert classifier.detector is None
    assert parse.out_of_scope is False and "ood_score" not in parse.metadata
    assert parse.intent.name in classifier.labels


def test_without_a_validation_split_the_train_split_calibrates(tiny_base: Path, tmp_path: Path) -> None:
    one_each = [Example("hello", "greet"), Example("my money", "request_refund"), Example("parcel", "track_order")]

    result = train_intents(one_each, tmp_path / "m", tiny_training(tiny_base), progress=False)

    block = json.loads((result.output_dir / METADATA_FILE).read_text())["out_of_scope"]["torch"]
    assert result.n_validation == 0
    assert block["calibrated_on"] == "train" and block["n_calibration"] == 3
    assert (result.output_dir / DETECTOR_FILE).is_file()


def test_an_out_of_scope_intent_is_flagged_and_kept_out_of_the_detector(tiny_base: Path, tmp_path: Path) -> None:
    """Negatives written for training (Rasa's `out_of_scope` intent) teach the classifier a class
    of its own; the detector models only the support intents, and calibrates on those alone."""
    negatives = [Example(f"weather {word} {i}", "out_of_scope") for i, word in enumerate(["rain", "sun"] * 20)]

    result = train_intents(keyword_examples() + negatives, tmp_path / "m", tiny_training(tiny_base), progress=False)

    classifier = IntentClassifier.load(result.output_dir)
    assert "out_of_scope" in classifier.labels
    assert classifier.detector is not None and classifier.detector.means.shape[0] == 3
    blocks = json.loads((result.output_dir / METADATA_FILE).read_text())["out_of_scope"]
    assert all(b["n_calibration"] == 18 for b in blocks.values())  # the support intents' validation share
    assert all(0.0 < b["class_threshold"] < 1.0 for b in blocks.values())
    parse = classifier.parse("weather rain 99")
    assert parse.intent.name == "out_of_scope" and parse.out_of_scope


def test_a_support_intent_ranked_first_is_still_flagged_when_out_of_scope_is_likely(trained: TrainResult) -> None:
    """The `out_of_scope` intent's probability has its own threshold: ranking second is not safe."""

    class Fixed:  # an encoder giving every message these probabilities
        workers = 1

        def __init__(self, probabilities: list[float]) -> None:
            self.logits = np.log(np.array(probabilities, np.float32))

        def __call__(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.tile(self.logits, (len(ids), 1)), np.zeros((len(ids), 4), np.float32)

        def map(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
            return [self(*batch) for batch in batches]

    tokenizer = AutoTokenizer.from_pretrained(trained.output_dir)
    labels = ("greet", "track_order", "out_of_scope")

    def parse(probabilities: list[float]) -> bool:
        classifier = IntentClassifier(Fixed(probabilities), tokenizer, labels, class_threshold=0.2)
        return classifier.parse("hmm").out_of_scope

    assert parse([0.1, 0.55, 0.35])  # track_order first, but a 35 % chance it is nothing of ours
    assert not parse([0.1, 0.85, 0.05])
    assert parse([0.1, 0.2, 0.7])  # out_of_scope first
