"""Serving fast: the int8 ONNX graph (tiny model), length-aware batches, and the micro-batcher."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
)

from nlu import IntentScore, Parse, runtime
from nlu.batching import BatcherClosedError, MicroBatcher
from nlu.classifier import METADATA_FILE, IntentClassifier, length_groups
from nlu.runtime import FFN_OUTPUT_NODES, ONNX_FILE, OnnxEncoder, _HeadInputs, export_onnx, first_token_last_layer
from nlu.train import TrainResult, train_intents
from tests.nlu.tiny_model import keyword_examples, random_classifier, tiny_training

# --- the served graph ------------------------------------------------------------------------


def test_training_exports_an_int8_graph_with_an_fp32_head(trained: TrainResult) -> None:
    graph = onnx.load(trained.output_dir / ONNX_FILE).graph
    ops = Counter(node.op_type for node in graph.node)

    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["logits", "embeddings"]
    # The tiny model's one layer is its last, computed for the first token only
    # (`first_token_last_layer`): query, keys, values, attention output and feed-forward pair are
    # plain int8 matrix products, not a fused attention operator.
    assert ops["QAttention"] == 0
    assert ops["DynamicQuantizeMatMul"] + ops["MatMulInteger"] == 3 + 1 + 2
    # The residual Add and LayerNorm stay apart (the fused operator measured 4x slower); with no
    # attention to fuse, the embeddings' LayerNorm is a plain one too
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 3
    head = [n for n in graph.node if "classifier" in n.name]
    assert head and all(n.op_type in {"Gemm", "MatMul", "Add"} for n in head)  # not quantised


def test_layers_before_the_last_export_with_fused_int8_attention(tmp_path: Path) -> None:
    model = random_classifier(layers=3)
    graph = onnx.load(export_onnx(model, tmp_path / "model.onnx", 2, 32)).graph
    ops = Counter(node.op_type for node in graph.node)

    assert ops["QAttention"] == 2  # layers 0 and 1; the last one computes the first token alone
    assert ops["QEmbedLayerNormalization"] == 1
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 6
    # The last layer masks padding with the input mask, and the segment ids are given: neither the
    # encoder's 4-D mask (Range, GreaterOrEqual, And) nor its buffer of segment ids (GatherElements)
    # is built in the graph, only for the one layer that would read it.
    assert not {"Range", "GreaterOrEqual", "And", "GatherElements"} & set(ops)
    whole = onnx.load(export_onnx(model, tmp_path / "whole.onnx", 2, 32, first_token_only=False)).graph
    assert Counter(node.op_type for node in whole.node)["QAttention"] == 3


def _quantised(graph: onnx.GraphProto) -> set[str]:
    """The names of the graph's int8 matrix products."""
    return {n.name for n in graph.node if n.op_type in {"DynamicQuantizeMatMul", "MatMulInteger"}}


def test_feed_forward_outputs_can_stay_fp32_while_the_rest_is_int8(tmp_path: Path) -> None:
    model = random_classifier(layers=2).train()
    full = onnx.load(export_onnx(model, tmp_path / "full.onnx", 2, 32)).graph
    kept = onnx.load(export_onnx(model, tmp_path / "kept.onnx", 2, 32, keep_fp32=FFN_OUTPUT_NODES)).graph

    assert not model.training  # the export leaves the model as it says: in eval mode, no dropout
    ffn_output = {n for n in _quantised(full) if FFN_OUTPUT_NODES[0].search(n)}
    assert {"layer.0", "layer.1"} == {n.split("/")[4] for n in ffn_output}  # quantised by default ...
    assert _quantised(kept) == _quantised(full) - ffn_output  # ... and the only nodes the fallback keeps fp32
    assert any("intermediate" in n for n in _quantised(kept))
    assert Counter(n.op_type for n in kept.node)["QAttention"] == 1


def _random_mpnet() -> MPNetForSequenceClassification:
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, num_labels=3, initializer_range=0.3)
    return MPNetForSequenceClassification(config).eval()


# (model, a batch of two messages, the second one padded): BERT pads with 0, MPNet with 1
ARCHITECTURES: dict[str, tuple[Callable[[], Any], list[list[int]], int]] = {
    "bert": (random_classifier, [[101, 200, 201, 202, 203, 204, 102], [101, 203, 102, 0, 0, 0, 0]], 0),
    "mpnet": (_random_mpnet, [[0, 200, 201, 202, 203, 204, 2], [0, 203, 2, 1, 1, 1, 1]], 1),
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_the_last_layer_computed_for_the_first_token_alone_gives_the_same_outputs(architecture: str) -> None:
    build, rows, pad = ARCHITECTURES[architecture]
    model = build()
    model.set_attn_implementation("eager")
    ids = torch.tensor(rows)
    mask = (ids != pad).long()
    with torch.inference_mode():
        logits, embeddings = _HeadInputs(model)(ids, mask)
        with first_token_last_layer(model) as swapped:
            cut_logits, cut_embeddings = _HeadInputs(model)(ids, mask)
            hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        restored = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state

    assert swapped
    assert hidden.shape == (2, 1, 32)  # the last layer's output: the first token only ...
    assert torch.allclose(cut_logits, logits, atol=1e-5)  # ... and the head's inputs and outputs unchanged
    assert torch.allclose(cut_embeddings, embeddings, atol=1e-5)  # (MPNet: its position bias row included)
    assert restored.shape == (2, 7, 32)  # the layer is whole again after the block
    assert (cut_logits[0] - cut_logits[1]).abs().max() > 0.01  # the two messages really differ


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_the_exported_first_token_graph_computes_what_torch_does(architecture: str, tmp_path: Path) -> None:
    """Traced on a (2, 8) batch of ones, the graph must still mask the padding of other shapes
    (the last layer builds its mask from the input one). Every node kept fp32, so only export
    errors show."""
    build, rows, pad = ARCHITECTURES[architecture]
    model = build()
    graph = export_onnx(model, tmp_path / "model.onnx", 2, 32, keep_fp32=(re.compile(""),))  # matches every name
    ids = np.array(rows * 2)[:3, :6]  # 3 messages of 6 tokens, one of them padded
    mask = (ids != pad).astype(np.int64)
    with torch.inference_mode():
        expected, _ = _HeadInputs(model)(torch.from_numpy(ids), torch.from_numpy(mask))

    logits, embeddings = OnnxEncoder(graph, workers=1)(ids, mask)

    assert embeddings.shape == (3, 32)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)  # the whole layer's answer
    assert np.abs(logits[0] - logits[1]).max() > 0.01  # and the padded message's is its own


def test_other_architectures_export_their_last_layer_whole() -> None:
    config = DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=2)
    model = DistilBertForSequenceClassification(config)
    with first_token_last_layer(model) as swapped:
        assert not swapped


def _quantised_ffn_outputs(model_dir: Path) -> set[str]:
    return {n for n in _quantised(onnx.load(model_dir / ONNX_FILE).graph) if FFN_OUTPUT_NODES[0].search(n)}


def test_metadata_says_which_graph_serves_and_what_it_lost(trained: TrainResult) -> None:
    metadata = json.loads((trained.output_dir / METADATA_FILE).read_text())
    quantisation = metadata["quantisation"]
    tried = {t["fp32_nodes"]: t["val_accuracy_loss_points"] for t in quantisation["tried"]}

    assert list(tried) in (["head"], ["head", "head+ffn-output"])
    # the second graph is only tried when the first lost more than the budget (0.3 points)
    assert (len(tried) == 2) == (tried["head"] > 0.3)
    served = 100 * (metadata["metrics"]["val_accuracy"] - metadata["metrics"]["served_val_accuracy"])
    assert tried[quantisation["fp32_nodes"]] == pytest.approx(served, abs=0.01)
    assert bool(_quantised_ffn_outputs(trained.output_dir)) == (quantisation["fp32_nodes"] == "head")


def test_the_fallback_graph_is_tried_and_the_better_one_served(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nlu.train.INT8_LOSS_BUDGET", -1.0)  # no graph is good enough: both are tried
    result = train_intents(keyword_examples(), tmp_path / "intents", tiny_training(tiny_base), progress=False)
    metadata = json.loads((result.output_dir / METADATA_FILE).read_text())
    tried = {t["fp32_nodes"]: t["val_accuracy_loss_points"] for t in metadata["quantisation"]["tried"]}
    chosen = metadata["quantisation"]["fp32_nodes"]

    assert list(tried) == ["head", "head+ffn-output"]
    assert chosen == ("head" if tried["head"] <= tried["head+ffn-output"] else "head+ffn-output")
    served = 100 * (metadata["metrics"]["val_accuracy"] - metadata["metrics"]["served_val_accuracy"])
    assert tried[chosen] == pytest.approx(served, abs=0.01)
    # the saved graph is the chosen one
    assert bool(_quantised_ffn_outputs(result.output_dir)) == (chosen == "head")


def test_served_graph_agrees_with_the_fp32_model(trained: TrainResult) -> None:
    fp32 = IntentClassifier.load(trained.output_dir, runtime="torch")
    int8 = IntentClassifier.load(trained.output_dir)  # the default: what `shopbot serve` runs
    texts = [e.text for e in keyword_examples()]

    reference, served = fp32.parse_batch(texts), int8.parse_batch(texts)

    agreement = sum(a.intent.name == b.intent.name for a, b in zip(reference, served, strict=True)) / len(texts)
    assert agreement >= 0.9
    assert int8.labels == fp32.labels
    for parse in served[:5]:
        assert sum(s.confidence for s in parse.ranking) == pytest.approx(1.0, abs=1e-4)
    # The embeddings come from the same int8 forward pass and barely move; the Mahalanobis scores
    # built on them move more (the precision matrix magnifies the directions in which in-scope
    # messages hardly vary), which is why each runtime has a detector calibrated on its own scores.
    before, after = fp32.embed(texts), int8.embed(texts)
    cosine = np.sum(before * after, axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert cosine.min() > 0.99
    assert int8.detector is not None and fp32.detector is not None
    assert int8.detector.threshold != fp32.detector.threshold


def test_a_batch_gives_each_message_the_parse_it_gets_alone(trained: TrainResult) -> None:
    classifier = IntentClassifier.load(trained.output_dir)
    texts = ["hello", "parcel " * 30, "money please now", "hello", "so parcel today " * 5]

    together = classifier.parse_batch(texts)
    alone = [classifier.parse(t) for t in texts]

    assert [p.text for p in together] == texts  # sorted by length inside, returned in order
    for a, b in zip(together, alone, strict=True):
        assert a.intent.name == b.intent.name
        assert a.intent.confidence == pytest.approx(b.intent.confidence, abs=0.02)
    assert classifier.parse_batch([]) == []


def test_the_encoder_runs_length_groups_side_by_side_and_returns_them_in_order(
    trained: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = OnnxEncoder(trained.output_dir / ONNX_FILE, workers=2)
    rng = np.random.default_rng(0)
    batches = [(ids, np.ones_like(ids)) for ids in (rng.integers(5, 40, (n, n + 3)) for n in (1, 6, 2, 9, 3))]
    alone = [encoder(*batch) for batch in batches]
    session, threads = encoder._session, set()

    class Recording:  # the session, noting which thread runs it
        def run(self, *args: object) -> object:
            threads.add(threading.get_ident())
            time.sleep(0.01)  # long enough that one worker cannot take every batch
            return session.run(*args)

    monkeypatch.setattr(encoder, "_session", Recording())
    together = encoder.map(batches)
    encoder.close()

    assert len(threads) == 2 and threading.get_ident() not in threads
    for (logits, pooled), (one_logits, one_pooled) in zip(together, alone, strict=True):
        np.testing.assert_array_equal(logits, one_logits)  # the same single-threaded arithmetic
        np.testing.assert_array_equal(pooled, one_pooled)


def test_a_lone_batch_runs_on_the_session_that_spreads_it_over_the_cores(
    trained: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    spread = OnnxEncoder(trained.output_dir / ONNX_FILE, workers=2, lone_threads=2)
    single = OnnxEncoder(trained.output_dir / ONNX_FILE, workers=2, lone_threads=1)
    ids = np.random.default_rng(1).integers(5, 40, (3, 11))
    batch = (ids, np.ones_like(ids))
    assert spread.lone_threads == 2 and spread._lone is not spread._session
    assert single.lone_threads == 1 and single._lone is single._session
    lone, runs = spread._lone, []

    class Recording:  # the two-thread session, noting its runs
        def run(self, *args: object) -> object:
            runs.append(args)
            return lone.run(*args)

    monkeypatch.setattr(spread, "_lone", Recording())
    [(logits, pooled)] = spread.map([batch])
    assert len(runs) == 1
    [(one_logits, one_pooled)] = single.map([batch])
    np.testing.assert_allclose(logits, one_logits, rtol=1e-5, atol=1e-5)  # sums split over two threads
    np.testing.assert_allclose(pooled, one_pooled, rtol=1e-5, atol=1e-5)
    assert OnnxEncoder(trained.output_dir / ONNX_FILE, workers=1).lone_threads == 1  # one core: nothing to spread


class _Clock:
    """perf_counter for `faster_than`: advanced only by the fake sessions' runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def session(self, *costs: float) -> Any:
        """A session whose runs take `costs` seconds, the last one from then on."""
        clock, runs = self, iter(costs)

        class Session:
            last = costs[-1]

            def run(self, *args: object) -> None:
                clock.now += next(runs, self.last)

        return Session()


@pytest.mark.parametrize(("candidate", "current", "chosen"), [
    ((0.0020,), (0.0030,), True),  # a third faster
    ((0.0029,), (0.0030,), False),  # not clearly faster: not worth a second core
    ((0.0040,), (0.0030,), False),
])
def test_the_lone_batch_session_is_kept_only_when_it_is_clearly_faster(
    monkeypatch: pytest.MonkeyPatch, candidate: tuple[float, ...], current: tuple[float, ...], chosen: bool
) -> None:
    clock = _Clock()
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock.now)
    assert runtime.faster_than(clock.session(*candidate), clock.session(*current)) is chosen


def test_a_classifier_in_front_of_another_engine_keeps_its_thresholds(trained: TrainResult) -> None:
    served = IntentClassifier.load(trained.output_dir)
    twin = served.with_encoder(OnnxEncoder(trained.output_dir / ONNX_FILE, workers=1))
    texts = [e.text for e in keyword_examples()][:20] + ["qwzx vbnm"]

    assert [p.out_of_scope for p in twin.parse_batch(texts)] == [p.out_of_scope for p in served.parse_batch(texts)]
    assert [p.ranking for p in twin.parse_batch(texts)] == [p.ranking for p in served.parse_batch(texts)]
    assert twin.detector is served.detector and twin.labels == served.labels
    assert twin._encoder.workers == 1 and served._encoder is not twin._encoder  # the original keeps its own


def test_more_workers_give_the_same_parses(trained: TrainResult) -> None:
    texts = ["hello", "parcel " * 30, "money please now", "hello", "so parcel today " * 5, "refund?"] * 4
    one, two = (IntentClassifier.load(trained.output_dir, threads=n) for n in (1, 2))

    assert [p.ranking for p in one.parse_batch(texts)] == [p.ranking for p in two.parse_batch(texts)]


def test_unknown_runtime_is_refused(trained: TrainResult) -> None:
    with pytest.raises(ValueError, match="unknown intent runtime 'tensorrt'"):
        IntentClassifier.load(trained.output_dir, runtime="tensorrt")


async def test_served_classifier_behind_the_batcher_matches_its_batch_parse(trained: TrainResult) -> None:
    classifier = IntentClassifier.load(trained.output_dir)
    texts = [e.text for e in keyword_examples(5)]
    batcher = MicroBatcher(classifier.parse_batch)

    served = await asyncio.gather(*(batcher.parse(t) for t in texts))
    await batcher.aclose()

    direct = classifier.parse_batch(texts)
    assert [p.text for p in served] == texts
    assert [p.intent.name for p in served] == [p.intent.name for p in direct]


# --- length-aware batches --------------------------------------------------------------------


def _cost(lengths: list[int], groups: list[tuple[int, int]], overhead: int) -> int:
    return sum(overhead + (stop - start) * lengths[stop - 1] for start, stop in groups)


@pytest.mark.parametrize(
    ("lengths", "max_batch", "expected"),
    [
        ([5] * 10, 32, [(0, 10)]),  # same length: one call
        ([5] * 10, 4, [(0, 2), (2, 6), (6, 10)]),  # capped; the cheapest cut
        ([4, 4, 4, 4, 60], 32, [(0, 4), (4, 5)]),  # the long one alone instead of padding four to 60
        ([4, 5, 6], 32, [(0, 3)]),  # a little padding is cheaper than a second call
        ([], 32, []),
    ],
)
def test_length_groups_cut_where_padding_costs_more_than_a_call(
    lengths: list[int], max_batch: int, expected: list[tuple[int, int]]
) -> None:
    groups = length_groups(lengths, max_batch, overhead=16)

    assert _cost(lengths, groups, 16) == _cost(lengths, expected, 16)
    assert [i for start, stop in groups for i in range(start, stop)] == list(range(len(lengths)))
    assert all(0 < stop - start <= max_batch for start, stop in groups)


@pytest.mark.parametrize(
    ("lengths", "min_groups", "expected"),
    [
        ([5] * 10, 2, [(0, 5), (5, 10)]),  # one cheapest call, halved for two workers
        ([4, 4, 4, 4, 60], 3, [(0, 2), (2, 4), (4, 5)]),  # the costlier batch is the one halved
        ([7], 2, [(0, 1)]),  # one message cannot be shared
        ([4, 4, 4, 4, 60], 2, [(0, 4), (4, 5)]),  # already enough
    ],
)
def test_length_groups_give_every_worker_a_batch(
    lengths: list[int], min_groups: int, expected: list[tuple[int, int]]
) -> None:
    assert length_groups(lengths, 32, overhead=16, min_groups=min_groups) == expected


def test_length_groups_beat_fixed_chunks_on_mixed_lengths() -> None:
    rng = np.random.default_rng(3)
    lengths = sorted(rng.integers(4, 64, size=200).tolist())
    fixed = [(i, min(i + 32, 200)) for i in range(0, 200, 32)]

    groups = length_groups(lengths, 32, overhead=16)

    assert _cost(lengths, groups, 16) < _cost(lengths, fixed, 16)


# --- micro-batching, with a fake batch function ----------------------------------------------


class FakeParser:
    """Answers each text with an intent named after it; records every batch it was given."""

    def __init__(self, fail_on: str | None = None, seconds: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()
        self._fail_on = fail_on
        self._seconds = seconds

    def parse_batch(self, texts: list[str]) -> list[Parse]:
        self.batches.append(list(texts))
        self.threads.add(threading.get_ident())
        time.sleep(self._seconds)
        if self._fail_on in texts:
            raise ValueError(f"cannot parse {self._fail_on!r}")
        return [Parse(text=t, intent=IntentScore(f"intent-{t}", 1.0)) for t in texts]


async def test_concurrent_messages_run_as_one_batch_in_a_worker_thread() -> None:
    fake = FakeParser()
    batcher = MicroBatcher(fake.parse_batch)
    texts = [f"m{i}" for i in range(10)]

    parses = await asyncio.gather(*(batcher.parse(t) for t in texts))

    assert fake.batches == [texts]
    assert [p.intent.name for p in parses] == [f"intent-{t}" for t in texts]
    assert threading.get_ident() not in fake.threads  # the event loop never ran the model
    await batcher.aclose()


async def test_batches_are_capped_and_each_caller_gets_its_own_answer() -> None:
    fake = FakeParser()
    batcher = MicroBatcher(fake.parse_batch, max_batch=32)
    texts = [f"m{i}" for i in range(70)]

    parses = await asyncio.gather(*(batcher.parse(t) for t in texts))

    assert [len(b) for b in fake.batches] == [32, 32, 6]
    assert [t for b in fake.batches for t in b] == texts  # arrival order, batch after batch
    assert [p.text for p in parses] == texts
    await batcher.aclose()


async def test_messages_arriving_within_the_window_share_a_batch() -> None:
    fake = FakeParser()
    batcher = MicroBatcher(fake.parse_batch, max_wait=0.5)

    first = asyncio.create_task(batcher.parse("early"))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(batcher.parse("late"))
    await asyncio.gather(first, second)

    assert fake.batches == [["early", "late"]]
    await batcher.aclose()


@pytest.mark.parametrize("window", [0.0, 0.05])
async def test_a_lone_message_waits_at_most_the_window(window: float) -> None:
    fake = FakeParser()
    batcher = MicroBatcher(fake.parse_batch, max_batch=32, max_wait=window)

    started = time.perf_counter()
    parse = await batcher.parse("alone")
    elapsed = time.perf_counter() - started

    assert parse.text == "alone"
    assert fake.batches == [["alone"]]
    assert window <= elapsed + 1e-3  # it did wait for company ...
    assert elapsed < window + 0.25  # ... but not for a full batch (slack for a loaded machine)
    await batcher.aclose()


async def test_a_failing_batch_fails_only_its_own_callers() -> None:
    fake = FakeParser(fail_on="boom")
    batcher = MicroBatcher(fake.parse_batch)

    outcomes = await asyncio.gather(batcher.parse("ok"), batcher.parse("boom"), return_exceptions=True)
    after = await batcher.parse("still fine")

    assert fake.batches == [["ok", "boom"], ["still fine"]]
    assert all(isinstance(o, ValueError) and "boom" in str(o) for o in outcomes)
    assert after.intent.name == "intent-still fine"
    await batcher.aclose()


async def test_a_batch_function_that_loses_answers_is_an_error() -> None:
    batcher = MicroBatcher(lambda texts: [])

    with pytest.raises(RuntimeError, match="0 parses for 1 messages"):
        await batcher.parse("hello")
    await batcher.aclose()


async def test_a_cancelled_caller_does_not_disturb_its_batch() -> None:
    fake = FakeParser(seconds=0.05)
    batcher = MicroBatcher(fake.parse_batch)
    impatient = asyncio.create_task(batcher.parse("impatient"))
    patient = asyncio.create_task(batcher.parse("patient"))
    await asyncio.sleep(0.01)  # both are in the running batch now

    impatient.cancel()
    parse = await patient

    assert parse.text == "patient"
    assert impatient.cancelled()
    await batcher.aclose()


async def test_close_answers_what_is_queued_then_refuses() -> None:
    fake = FakeParser(seconds=0.02)
    batcher = MicroBatcher(fake.parse_batch, max_batch=2)
    pending = [asyncio.create_task(batcher.parse(f"m{i}")) for i in range(5)]
    await asyncio.sleep(0)  # all five queued

    await batcher.aclose()

    assert [t.result().text for t in pending] == [f"m{i}" for i in range(5)]
    with pytest.raises(BatcherClosedError):
        await batcher.parse("too late")
    await batcher.aclose()  # closing twice is harmless


async def test_closing_an_unused_batcher_is_harmless() -> None:
    fake = FakeParser()
    batcher = MicroBatcher(fake.parse_batch)

    await batcher.aclose()

    assert fake.batches == []


async def test_small_batches_run_on_the_loop_and_large_ones_in_a_thread() -> None:
    fake = FakeParser()
    batcher = MicroBatcher(fake.parse_batch, inline_batch=1)

    await batcher.parse("alone")
    inline = set(fake.threads)
    await asyncio.gather(*(batcher.parse(f"m{i}") for i in range(3)))
    await batcher.aclose()

    assert inline == {threading.get_ident()}  # the lone message skipped the thread hand-off
    assert len(fake.threads - inline) == 1  # the batch of three did not
    assert fake.batches == [["alone"], ["m0", "m1", "m2"]]


@pytest.mark.parametrize(("max_batch", "max_wait", "inline_batch"), [(0, 0.002, 0), (8, -1.0, 0), (8, 0.0, -1)])
def test_batcher_settings_are_checked(max_batch: int, max_wait: float, inline_batch: int) -> None:
    with pytest.raises(ValueError, match="max_batch >= 1, max_wait >= 0, inline_batch >= 0"):
        MicroBatcher(FakeParser().parse_batch, max_batch=max_batch, max_wait=max_wait, inline_batch=inline_batch)
