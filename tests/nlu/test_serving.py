"""Serving fast: the int8 classifier (tiny model) and the micro-batcher (a fake batch function)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from transformers import AutoModelForSequenceClassification

from nlu import IntentScore, Parse
from nlu.batching import BatcherClosedError, MicroBatcher
from nlu.classifier import IntentClassifier
from nlu.quantize import quantize_for_serving
from nlu.train import TrainResult
from tests.nlu.tiny_model import keyword_examples

# --- int8 -----------------------------------------------------------------------------------


def test_quantisation_rewrites_the_encoder_and_keeps_head_and_pooler_fp32(trained: TrainResult) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(trained.output_dir)

    quantized = quantize_for_serving(model)

    modules = dict(quantized.named_modules())
    encoder = {name: m for name, m in modules.items() if name.startswith("bert.encoder.")}
    # One layer: query, key, value, attention output, intermediate, output.
    assert sum(isinstance(m, DynamicInt8Linear) for m in encoder.values()) == 6
    assert isinstance(encoder["bert.encoder.layer.0.attention.self.query"], DynamicInt8Linear)
    assert not [name for name, m in encoder.items() if type(m) is torch.nn.Linear]
    assert type(modules["classifier"]) is torch.nn.Linear
    assert type(modules["bert.pooler.dense"]) is torch.nn.Linear
    assert isinstance(modules["bert.embeddings.word_embeddings"], torch.nn.Embedding)
    # The argument is left as it was: the fp32 model can still be served or compared.
    assert type(dict(model.named_modules())["bert.encoder.layer.0.output.dense"]) is torch.nn.Linear


def test_quantised_classifier_agrees_with_fp32(trained: TrainResult) -> None:
    fp32 = IntentClassifier.load(trained.output_dir)
    int8 = IntentClassifier.load(trained.output_dir, quantized=True)
    texts = [e.text for e in keyword_examples()]

    reference, served = fp32.parse_batch(texts), int8.parse_batch(texts)

    agreement = sum(a.intent.name == b.intent.name for a, b in zip(reference, served, strict=True)) / len(texts)
    assert agreement >= 0.9
    assert int8.labels == fp32.labels
    for parse in served[:5]:
        assert sum(s.confidence for s in parse.ranking) == pytest.approx(1.0, abs=1e-4)
    # The out-of-scope embeddings come from the same (now int8) forward pass and barely move.
    # (The Mahalanobis scores built on them move more: the precision matrix magnifies the
    # directions in which in-scope messages hardly vary, so calibrate the threshold on int8.)
    before, after = fp32.embed(texts), int8.embed(texts)
    cosine = np.sum(before * after, axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert cosine.min() > 0.999
    assert all(b.metadata["ood_score"] >= 0.0 for b in served)


async def test_quantised_classifier_behind_the_batcher_matches_its_batch_parse(trained: TrainResult) -> None:
    classifier = IntentClassifier.load(trained.output_dir, quantized=True)
    texts = [e.text for e in keyword_examples(5)]
    batcher = MicroBatcher(classifier.parse_batch)

    served = await asyncio.gather(*(batcher.parse(t) for t in texts))
    await batcher.aclose()

    direct = classifier.parse_batch(texts)
    assert [p.text for p in served] == texts
    assert [p.intent.name for p in served] == [p.intent.name for p in direct]


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


@pytest.mark.parametrize(("max_batch", "max_wait"), [(0, 0.002), (8, -1.0)])
def test_batcher_settings_are_checked(max_batch: int, max_wait: float) -> None:
    with pytest.raises(ValueError, match="max_batch >= 1 and max_wait >= 0"):
        MicroBatcher(FakeParser().parse_batch, max_batch=max_batch, max_wait=max_wait)
