"""Intent serving: the stock transformers pipeline against ShopBot's served classifier + micro-batcher.

    python bench/intent_serving.py --model models/intents --data data/tests/robustness.yml

One run, the same messages for both sides:
- baseline: `transformers.pipeline("text-classification", model=<dir>)` called once per message;
- ShopBot: `IntentClassifier.load(<dir>)` (the int8 ONNX Runtime graph `shopbot train` exports)
  behind `MicroBatcher`, as `shopbot serve` runs it.
It measures single-message latency (sequential, median and p99), throughput with 64 concurrent
requests (the baseline: a pool of 64 threads calling the pipeline, and a plain loop), and the
accuracy of the fp32 torch model against the served int8 graph on the labelled messages; prints a
markdown table and appends it to bench/RESULTS.md. Timings are wall-clock on whatever else the
machine is doing: run it on a quiet machine, and read one run as one sample.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# As `shopbot` does (bot/cli.py): OpenBLAS's own threads busy-wait after every numpy matrix
# product and take the two cores from ONNX Runtime; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from transformers import pipeline  # noqa: E402

from nlu.batching import MicroBatcher  # noqa: E402
from nlu.classifier import IntentClassifier  # noqa: E402
from nlu.dataset import load_examples  # noqa: E402
from nlu.parse import Parse  # noqa: E402

TARGET_SPEEDUP = 10.0  # throughput, ours / baseline
TARGET_MEDIAN_MS = 2.0  # one message, ShopBot served
TARGET_ACCURACY_LOSS = 0.3  # points, fp32 -> int8
WARMUP = 20


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds) * 1e3
        return cls(float(np.median(ms)), float(np.percentile(ms, 99)))


def time_each(call: Callable[[str], Any], texts: Sequence[str]) -> tuple[Latency, list[Any]]:
    """Call once per text, one after the other; the latency distribution and the answers."""
    for text in texts[:WARMUP]:
        call(text)
    seconds, answers = [], []
    for text in texts:
        start = time.perf_counter()
        answers.append(call(text))
        seconds.append(time.perf_counter() - start)
    return Latency.of(seconds), answers


def threaded_throughput(call: Callable[[str], Any], texts: Sequence[str], workers: int) -> tuple[float, int]:
    """Messages per second with `workers` threads calling `call` per message; and how many failed."""

    def guarded(text: str) -> bool:
        try:
            call(text)
        except Exception as exc:  # e.g. a fast tokenizer used from two threads at once
            print(f"baseline thread pool: {type(exc).__name__}: {exc}", file=sys.stderr)
            return False
        return True

    with ThreadPoolExecutor(max_workers=workers) as pool:
        start = time.perf_counter()
        ok = list(pool.map(guarded, texts))
        elapsed = time.perf_counter() - start
    return len(texts) / elapsed, ok.count(False)


async def served_latency(batcher: MicroBatcher, texts: Sequence[str]) -> tuple[Latency, list[Parse]]:
    """One request at a time through the batcher: what a lone shopper waits."""
    for text in texts[:WARMUP]:
        await batcher.parse(text)
    seconds, parses = [], []
    for text in texts:
        start = time.perf_counter()
        parses.append(await batcher.parse(text))
        seconds.append(time.perf_counter() - start)
    return Latency.of(seconds), parses


async def served_throughput(batcher: MicroBatcher, texts: Sequence[str], clients: int) -> float:
    """Messages per second with `clients` concurrent callers, each sending its next message as
    soon as the previous one is answered (so `clients` requests are always in flight)."""
    queue = iter(texts)

    async def client() -> None:
        for text in queue:  # a shared iterator: every message is sent exactly once
            await batcher.parse(text)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(texts) / (time.perf_counter() - start)


class CountingBatches:
    """Wraps `parse_batch` to record batch sizes (how much the batcher actually grouped)."""

    def __init__(self, parse_batch: Callable[[Sequence[str]], list[Parse]]) -> None:
        self.sizes: list[int] = []
        self._parse_batch = parse_batch

    def __call__(self, texts: list[str]) -> list[Parse]:
        self.sizes.append(len(texts))
        return self._parse_batch(texts)


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    return 100.0 * sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)


def bench_baseline(model_dir: Path, texts: list[str], load: list[str], clients: int) -> dict[str, Any]:
    classify = pipeline("text-classification", model=str(model_dir))
    latency, answers = time_each(classify, texts)
    threaded, failures = threaded_throughput(classify, load, clients)
    start = time.perf_counter()
    for text in load:
        classify(text)
    sequential = len(load) / (time.perf_counter() - start)
    labels = [a[0]["label"] for a in answers]
    return {"latency": latency, "threaded": threaded, "failures": failures, "sequential": sequential, "labels": labels}


async def bench_served(model_dir: Path, texts: list[str], load: list[str], args: argparse.Namespace) -> dict[str, Any]:
    int8 = IntentClassifier.load(model_dir)
    direct, _ = time_each(int8.parse, texts)  # no batcher: the classifier's own floor
    # One message is framework-bound: does a second thread help it at all?
    one_thread, _ = time_each(IntentClassifier.load(model_dir, threads=1).parse, texts)
    results: dict[str, Any] = {"direct": direct, "one_thread": one_thread}
    for key, window in (("windowed", args.max_wait), ("instant", 0.0)):
        counted = CountingBatches(int8.parse_batch)
        batcher = MicroBatcher(counted, max_batch=args.max_batch, max_wait=window, inline_batch=1)  # as served
        latency, single = await served_latency(batcher, texts)
        counted.sizes.clear()
        throughput = await served_throughput(batcher, load, args.concurrency)
        await batcher.aclose()
        results[key] = {"latency": latency, "throughput": throughput, "mean_batch": float(np.mean(counted.sizes))}
        results["single_labels"] = [p.intent.name for p in single]
    results["batch_parses"] = int8.parse_batch(texts)
    return results


def bench_accuracy(model_dir: Path, texts: list[str]) -> list[Parse]:
    return IntentClassifier.load(model_dir, runtime="torch").parse_batch(texts)


def out_of_scope_agreement(fp32: Sequence[Parse], int8: Sequence[Parse]) -> str:
    if "ood_score" not in fp32[0].metadata:
        return "n/a (this model has no out-of-scope detector)"
    same = sum(a.out_of_scope == b.out_of_scope for a, b in zip(fp32, int8, strict=True))
    flagged = sum(b.out_of_scope for b in int8), sum(a.out_of_scope for a in fp32)
    return f"{100 * same / len(fp32):.1f}% same flag (int8 flags {flagged[0]}, fp32 {flagged[1]})"


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def report(args: argparse.Namespace, n: int, base: dict[str, Any], ours: dict[str, Any],
           fp32: list[Parse], truth: list[str]) -> str:
    served, instant = ours["windowed"], ours["instant"]
    base_tp = max(base["threaded"] if not base["failures"] else 0.0, base["sequential"])
    speedup = served["throughput"] / base_tp
    acc32 = accuracy([p.intent.name for p in fp32], truth)
    acc8_batch = accuracy([p.intent.name for p in ours["batch_parses"]], truth)
    acc8_single = accuracy(ours["single_labels"], truth)
    loss = acc32 - min(acc8_batch, acc8_single)
    agree = accuracy([p.intent.name for p in ours["batch_parses"]], [p.intent.name for p in fp32])
    bl, sl, il, dl, tl = base["latency"], served["latency"], instant["latency"], ours["direct"], ours["one_thread"]
    w = f"{args.max_wait * 1e3:g} ms"
    rows = [
        "| measure | baseline: `pipeline` per message | ShopBot: ONNX Runtime int8 + MicroBatcher | ours / baseline "
        "| target | met |",
        "|---|---|---|---|---|---|",
        f"| 1 message, median (sequential) | {bl.median_ms:.2f} ms | {sl.median_ms:.2f} ms (window {w}); "
        f"{il.median_ms:.2f} ms (window 0); {dl.median_ms:.2f} ms (no batcher; 1 thread: {tl.median_ms:.2f} ms) | "
        f"speed-up {bl.median_ms / sl.median_ms:.2f}x / {bl.median_ms / il.median_ms:.2f}x | <= 2 ms | "
        f"{verdict(sl.median_ms <= TARGET_MEDIAN_MS)} (window {w}); {verdict(il.median_ms <= TARGET_MEDIAN_MS)} (0) |",
        f"| 1 message, p99 (sequential) | {bl.p99_ms:.2f} ms | {sl.p99_ms:.2f} ms (window {w}); "
        f"{il.p99_ms:.2f} ms (window 0); {dl.p99_ms:.2f} ms (no batcher; 1 thread: {tl.p99_ms:.2f} ms) | "
        f"speed-up {bl.p99_ms / sl.p99_ms:.2f}x / {bl.p99_ms / il.p99_ms:.2f}x | - | - |",
        f"| throughput, {args.concurrency} concurrent | {base['threaded']:.0f} msg/s ({args.concurrency}-thread pool"
        f"{', ' + str(base['failures']) + ' failed calls' if base['failures'] else ''}); "
        f"{base['sequential']:.0f} msg/s (loop) | {served['throughput']:.0f} msg/s (window {w}, mean batch "
        f"{served['mean_batch']:.1f}); {instant['throughput']:.0f} msg/s (window 0, mean batch "
        f"{instant['mean_batch']:.1f}) | {speedup:.2f}x (vs the better baseline) | >= 10x | "
        f"{verdict(speedup >= TARGET_SPEEDUP)} |",
        f"| accuracy, {n} labelled messages | fp32 {acc32:.2f}% (pipeline: {accuracy(base['labels'], truth):.2f}%) | "
        f"int8 {acc8_batch:.2f}% batched, {acc8_single:.2f}% one by one; {agree:.1f}% same intent as fp32 | "
        f"loss {loss:.2f} points | < 0.3 points | {verdict(loss < TARGET_ACCURACY_LOSS)} |",
        f"| out of scope, fp32 vs int8 | - | {out_of_scope_agreement(fp32, ours['batch_parses'])} | - | - | - |",
    ]
    return "\n".join(rows)


def append_results(path: Path, args: argparse.Namespace, table: str, n: int, load: int) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python bench/intent_serving.py " + " ".join(sys.argv[1:])
    context = (f"{n} messages from `{args.data}`; throughput over {load} requests ({args.rounds} passes); "
               f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
               f"{os.cpu_count()} CPUs; "
               f"MicroBatcher max_batch {args.max_batch}; load average before the run {args.load_before}.")
    if not path.exists():
        path.write_text("# ShopBot benchmarks\n", encoding="utf-8")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"\n## Intent serving, {now}\n\n`{command}`\n\n{context}\n\n{table}\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/intents"))
    parser.add_argument("--data", type=Path, default=Path("data/tests/robustness.yml"))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the messages for throughput")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait", type=float, default=0.002, help="batching window, seconds")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    args.load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())  # other work on the machine

    examples = load_examples(args.data)
    texts, truth = [e.text for e in examples], [e.intent for e in examples]
    load = texts * args.rounds
    print(f"{len(texts)} messages, torch threads {torch.get_num_threads()}", file=sys.stderr)
    base = bench_baseline(args.model, texts, load, args.concurrency)
    ours = asyncio.run(bench_served(args.model, texts, load, args))
    fp32 = bench_accuracy(args.model, texts)
    table = report(args, len(texts), base, ours, fp32, truth)
    print(table)
    append_results(args.results, args, table, len(texts), len(load))


if __name__ == "__main__":
    main()
