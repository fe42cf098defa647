"""Three choices in how the int8 intent graph runs, each timed against the alternative in one run.

    python bench/intent_graph.py --model models/intents --data data/tests/robustness.yml

1. The residual connection + LayerNorm: ONNX Runtime's fused SkipLayerNormalization operator
   against the plain Add + LayerNormalization pair the export keeps (`nlu.runtime.UNFUSED`), on a
   (tokens, hidden) activation of the model's width: 64 messages of 20 tokens by default.
2. A batch cut into length groups: the groups run one after the other, each on all cores (one
   session with as many intra-op threads as cores) against side by side, one single-threaded run
   per core (`OnnxEncoder.map`, what `shopbot serve` does). Whole `parse_batch` calls on 64-message
   slices of `--data`, so tokenising, entities and out-of-scope scores are in both.
3. The last encoder layer: computed for every token against for the first token alone, the only
   one the classifier head reads (`nlu.runtime.first_token_last_layer`). The alternative graph is
   exported here from the model's fp32 weights with the same int8 settings as the served one.
   Whole `parse_batch` calls as in 2, both served the same way, and one message at a time; plus
   how often the two graphs pick the same intent.
All are timed in `--rounds` interleaved rounds; the table gives medians and the median of the
rounds' ratios, and is appended to bench/RESULTS.md. Wall-clock on a shared machine: one run is
one sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from nlu.classifier import IntentClassifier  # noqa: E402
from nlu.dataset import load_examples  # noqa: E402
from nlu.runtime import (  # noqa: E402
    FFN_OUTPUT_NODES,
    ONNX_FILE,
    UNFUSED,
    Batch,
    OnnxEncoder,
    cpu_model,
    export_onnx,
    usable_cores,
)

OPSET = 17


def layer_norm_session(fused: bool, tokens: int, hidden: int, threads: int) -> tuple[ort.InferenceSession, dict]:
    """A one-operator graph: x + skip + bias, then LayerNorm; fused or as Add + LayerNormalization."""
    rng = np.random.default_rng(0)
    weights = [helper.make_tensor(name, TensorProto.FLOAT, [hidden], rng.normal(size=hidden).astype(np.float32))
               for name in ("gamma", "beta", "bias")]
    if fused:
        nodes = [helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"],
                                  domain="com.microsoft", epsilon=1e-12)]
    else:
        nodes = [helper.make_node("Add", ["x", "bias"], ["biased"]),
                 helper.make_node("Add", ["biased", "skip"], ["summed"]),
                 helper.make_node("LayerNormalization", ["summed", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [tokens, hidden]) for name in ("x", "skip")]
    graph = helper.make_graph(nodes, "residual", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as written, not refused
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {name: rng.normal(size=(tokens, hidden)).astype(np.float32) for name in ("x", "skip")}
    return session, feed


def seconds_per_call(call: Callable[[], Any], repeats: int) -> float:
    """Median seconds of `repeats` calls, after a few to warm up."""
    for _ in range(5):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class OneAfterTheOther:
    """The alternative to `OnnxEncoder`: one session using every core, its batches run in turn."""

    workers = 1  # so the classifier does not cut batches for workers that are not there

    def __init__(self, path: Path, threads: int) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                             disabled_optimizers=list(UNFUSED))

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return logits, embeddings

    def map(self, batches: Sequence[Batch]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self(ids, mask) for ids, mask in batches]


def whole_last_layer(model_dir: Path, metadata: dict[str, Any], folder: Path) -> Path:
    """The served graph's alternative: the same weights and int8 settings, the last layer computed whole."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    keep = FFN_OUTPUT_NODES if metadata.get("quantisation", {}).get("fp32_nodes") == "head+ffn-output" else ()
    return export_onnx(model, folder / ONNX_FILE, model.config.num_attention_heads, model.config.hidden_size,
                       keep_fp32=keep, first_token_only=False)


def one_at_a_time(classifier: IntentClassifier, texts: Sequence[str]) -> float:
    """Median seconds of `parse` for one message alone, over `texts`."""
    times = []
    for text in texts:
        start = time.perf_counter()
        classifier.parse(text)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def throughput(classifier: IntentClassifier, slices: Sequence[list[str]]) -> float:
    """Messages per second through `parse_batch`, one call per slice."""
    start = time.perf_counter()
    for texts in slices:
        classifier.parse_batch(texts)
    return sum(map(len, slices)) / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/intents"))
    parser.add_argument("--data", type=Path, default=Path("data/tests/robustness.yml"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="messages per parse_batch call")
    parser.add_argument("--tokens", type=int, default=1280, help="rows of the LayerNorm activation")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    cores = usable_cores()

    side_by_side = IntentClassifier.load(args.model)  # as served: OnnxEncoder, one worker per core
    hidden = side_by_side.embed(["hello"]).shape[1]
    in_turn = side_by_side.with_encoder(OneAfterTheOther(args.model / ONNX_FILE, cores))
    with tempfile.TemporaryDirectory(prefix="shopbot-bench-") as scratch:  # the session keeps the graph
        whole = side_by_side.with_encoder(OnnxEncoder(whole_last_layer(args.model, side_by_side.metadata,
                                                                       Path(scratch))))
    texts = [e.text for e in load_examples(args.data)]
    rng = np.random.default_rng(0)
    shuffled = [texts[i] for i in rng.permutation(len(texts))]
    slices = [shuffled[i:i + args.batch] for i in range(0, len(shuffled), args.batch)]
    sessions = {fused: layer_norm_session(fused, args.tokens, hidden, cores) for fused in (True, False)}
    agreement = np.mean([a.intent.name == b.intent.name
                         for a, b in zip(side_by_side.parse_batch(texts), whole.parse_batch(texts), strict=True)])

    rounds: list[dict[str, float]] = []
    for number in range(1, args.rounds + 1):
        row = {
            "fused_ms": 1e3 * seconds_per_call(lambda: sessions[True][0].run(None, sessions[True][1]), 100),
            "pair_ms": 1e3 * seconds_per_call(lambda: sessions[False][0].run(None, sessions[False][1]), 100),
            "in_turn": throughput(in_turn, slices),
            "side_by_side": throughput(side_by_side, slices),
            "whole": throughput(whole, slices),
            "one_whole_ms": 1e3 * one_at_a_time(whole, shuffled),
            "one_first_ms": 1e3 * one_at_a_time(side_by_side, shuffled),
        }
        print(f"round {number}: SkipLayerNormalization {row['fused_ms']:.3f} ms, Add + LayerNormalization "
              f"{row['pair_ms']:.3f} ms; in turn {row['in_turn']:.0f} msg/s, side by side "
              f"{row['side_by_side']:.0f} msg/s; last layer whole {row['whole']:.0f} msg/s, "
              f"{row['one_whole_ms']:.2f} ms alone; first token only {row['one_first_ms']:.2f} ms alone",
              file=sys.stderr)
        rounds.append(row)

    def median(key: str) -> float:
        return float(np.median([r[key] for r in rounds]))

    def ratio(top: str, bottom: str) -> str:
        each = [r[top] / r[bottom] for r in rounds]
        return f"{np.median(each):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in each)})"

    table = "\n".join([
        "| measure | alternative | ShopBot | ShopBot's gain |",
        "|---|---|---|---|",
        f"| residual + LayerNorm on ({args.tokens}, {hidden}) fp32, {cores} threads | SkipLayerNormalization "
        f"{median('fused_ms'):.3f} ms | Add + LayerNormalization {median('pair_ms'):.3f} ms | "
        f"{ratio('fused_ms', 'pair_ms')} |",
        f"| `parse_batch` of {args.batch} messages, length groups | one after the other, {cores} threads each: "
        f"{median('in_turn'):.0f} msg/s | side by side, 1 thread each on {cores} workers: "
        f"{median('side_by_side'):.0f} msg/s | {ratio('side_by_side', 'in_turn')} |",
        f"| `parse_batch` of {args.batch} messages, last layer | every token: {median('whole'):.0f} msg/s | "
        f"first token only: {median('side_by_side'):.0f} msg/s | {ratio('side_by_side', 'whole')} |",
        f"| one message at a time (median), last layer | every token: {median('one_whole_ms'):.2f} ms | "
        f"first token only: {median('one_first_ms'):.2f} ms | {ratio('one_whole_ms', 'one_first_ms')} |",
    ])
    print(table)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python bench/intent_graph.py " + " ".join(sys.argv[1:] if argv is None else argv)
    context = (f"{len(texts)} messages from `{args.data}` in {len(slices)} slices; {args.rounds} interleaved rounds; "
               f"onnxruntime {ort.__version__}, {cores} usable CPUs ({cpu_model()}); model `{args.model}`. "
               f"The two last-layer graphs pick the same intent for {agreement:.1%} of the messages.")
    with args.results.open("a", encoding="utf-8") as handle:
        handle.write(f"\n## Intent graph choices, {now}\n\n`{command}`\n\n{context}\n\n{table}\n")


if __name__ == "__main__":
    main()
