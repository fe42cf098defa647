"""Generator serving: ShopBot's batched, KV-cached streaming against plain `model.generate` per request.

    python bench/generator_serving.py --model models/generator --requests 96

With N requests, 8 clients send N/8 each: with few per client, the last ones run with fewer than 8
streams at once, so more requests measure 8 concurrent streams more closely.

One run, the same prompts (held-out dialogues of the training corpus) and greedy decoding for
both sides, so both write the same replies:
- baseline: `model.generate(...)` called once per request (a streamer records its first token);
  with 8 concurrent requests, a pool of 8 threads each calling it, or one after another,
  whichever is faster;
- ShopBot: `StreamingGenerator` (what `shopbot serve` runs), 1 stream at a time, and 8 streams at
  once (8 clients, each sending its next request when its reply has ended).
Reports time to first token (median) and aggregate tokens/s, prints a table and appends it to
bench/RESULTS.md. Wall-clock timings on a shared machine: read one run as one sample.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bot.settings import load_settings  # noqa: E402
from generation.corpus import build_corpus, load_templates, split  # noqa: E402
from generation.generator import Generator, StreamingGenerator  # noqa: E402
from generation.sampling import SamplingSettings  # noqa: E402

TARGET_FIRST_TOKEN_MS = 50.0
TARGET_TOKENS_PER_S = 1_000.0  # aggregate, 8 streams


class _FirstToken:
    """A `generate` streamer that notes when the first new token arrives (the prompt comes first)."""

    def __init__(self) -> None:
        self.calls = 0
        self.at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.at is None:
            self.at = time.perf_counter()

    def end(self) -> None:
        pass


def baseline_one(generator: Generator, prompt: str, max_new: int) -> tuple[float, float, int]:
    """(seconds to first token, seconds in all, new tokens) for one plain `generate` call."""
    inputs = generator.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    streamer = _FirstToken()
    started = time.perf_counter()
    with torch.inference_mode():
        output = generator.model.generate(**inputs, max_new_tokens=max_new, do_sample=False, streamer=streamer,
                                          eos_token_id=generator.tokenizer.eos_token_id,
                                          pad_token_id=generator.tokenizer.pad_token_id)
    total = time.perf_counter() - started
    first = (streamer.at or time.perf_counter()) - started
    return first, total, int(output.shape[1] - inputs["input_ids"].shape[1])


def bench_baseline(generator: Generator, prompts: Sequence[str], max_new: int) -> dict[str, float]:
    runs = [baseline_one(generator, p, max_new) for p in prompts]
    single_tps = sum(r[2] for r in runs) / sum(r[1] for r in runs)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda p: baseline_one(generator, p, max_new), prompts))
    pooled_tps = sum(r[2] for r in threaded) / (time.perf_counter() - started)
    return {"first_ms": float(np.median([r[0] for r in runs]) * 1e3), "tps_1": single_tps,
            "tps_8": max(pooled_tps, single_tps), "tps_8_pool": pooled_tps}


async def bench_ours(generator: Generator, prompts: Sequence[str]) -> dict[str, float]:
    streaming = StreamingGenerator(generator, max_batch=8, max_wait=0.002)

    async def one(prompt: str) -> tuple[float, int]:
        started, first, text = time.perf_counter(), None, ""
        async for piece in streaming.stream(prompt):
            first = first if first is not None else time.perf_counter() - started
            text += piece
        return first or 0.0, len(generator.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1

    started = time.perf_counter()
    singles = [await one(p) for p in prompts]
    single_seconds = time.perf_counter() - started
    streaming.batch_sizes.clear()
    started = time.perf_counter()
    waiting = list(prompts)

    async def client() -> list[tuple[float, int]]:  # one of 8 shoppers: the next request when a reply ends
        done = []
        while waiting:
            done.append(await one(waiting.pop(0)))
        return done

    together = [r for rs in await asyncio.gather(*(client() for _ in range(8))) for r in rs]
    eight_seconds = time.perf_counter() - started
    await streaming.aclose()
    return {"first_ms": float(np.median([s[0] for s in singles]) * 1e3),
            "first_ms_8": float(np.median([s[0] for s in together]) * 1e3),
            "tps_1": sum(s[1] for s in singles) / single_seconds, "tps_8": sum(s[1] for s in together) / eight_seconds,
            "mean_batch": float(np.mean(streaming.batch_sizes))}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/generator"))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    settings = load_settings()
    t = settings.generation.train
    _, validation = split(build_corpus(load_templates(settings.generation.templates), t.corpus_size, t.seed),
                          t.validation_fraction, t.seed)
    sampling = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=args.max_new_tokens)
    generator = Generator.load(args.model, sampling)
    prompts = [generator.prompt(s.passages, s.history).text for s in validation[: args.requests]]
    generator.generate(prompts[:2])  # warm-up
    base = bench_baseline(generator, prompts, args.max_new_tokens)  # torch's default threads
    baseline_threads = torch.get_num_threads()
    if settings.generation.threads > 0:  # as `shopbot serve` runs it
        torch.set_num_threads(settings.generation.threads)
    ours = asyncio.run(bench_ours(generator, prompts))
    alone = [generator.generate([p])[0] for p in prompts[:8]]
    same = sum(a == b for a, b in zip(generator.generate(prompts[:8]), alone, strict=True))
    met = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    table = "\n".join([
        "| measure | baseline: `model.generate` per request | ShopBot: StreamingGenerator | ours / baseline | target "
        "| met |",
        "|---|---|---|---|---|---|",
        f"| time to first token, 1 stream (median) | {base['first_ms']:.1f} ms | {ours['first_ms']:.1f} ms | "
        f"{base['first_ms'] / ours['first_ms']:.2f}x faster | <= {TARGET_FIRST_TOKEN_MS:g} ms | "
        f"{met(ours['first_ms'] <= TARGET_FIRST_TOKEN_MS)} |",
        f"| tokens/s, 1 stream | {base['tps_1']:.0f} | {ours['tps_1']:.0f} | {ours['tps_1'] / base['tps_1']:.2f}x | - "
        "| - |",
        f"| tokens/s, 8 concurrent streams (aggregate) | {base['tps_8']:.0f} (8-thread pool: {base['tps_8_pool']:.0f}) "
        f"| {ours['tps_8']:.0f} (mean batch {ours['mean_batch']:.1f}; first token {ours['first_ms_8']:.0f} ms) | "
        f"{ours['tps_8'] / base['tps_8']:.2f}x | >= {TARGET_TOKENS_PER_S:,.0f} | "
        f"{met(ours['tps_8'] >= TARGET_TOKENS_PER_S)} |",
        f"| batched replies equal to one-by-one replies (greedy) | - | {same} of 8 | - | - | - |",
    ])
    print(table)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = (f"{len(prompts)} prompts from the held-out corpus split, greedy, at most {args.max_new_tokens} new "
               f"tokens; model {args.model} ({sum(p.numel() for p in generator.model.parameters()) / 1e6:.1f} M "
               f"parameters); torch {torch.__version__}, {baseline_threads} threads for the baseline and "
               f"{torch.get_num_threads()} for ShopBot (`generation.threads`), {os.cpu_count()} CPUs; "
               f"load average before the run {load_before}.")
    with args.results.open("a", encoding="utf-8") as handle:
        command = "python bench/generator_serving.py " + " ".join(sys.argv[1:])
        handle.write(f"\n## Generator serving, {now}\n\n`{command}`\n\n{context}\n\n{table}\n")


if __name__ == "__main__":
    main()
