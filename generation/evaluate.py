"""`shopbot evaluate generator`: perplexity, grounding rate, diversity and speed on held-out dialogues.

- perplexity: of the reply tokens of the held-out split (what training minimises);
- grounding rate: the share of generated replies whose checkable facts (prices, numbers, dates,
  order numbers, emails, URLs, product names) all appear in that dialogue's passages or turns;
- description coverage: the share of given attribute values that the description states (the best
  of `generation.description_candidates` samples, as `shopbot generate description` serves it);
- distinct-2: distinct word pairs over all word pairs of the replies (1.0: never repeats itself);
- latency: one reply at a time, time to the first piece and to the whole reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from generation.corpus import Sample
from generation.generator import Generator
from generation.grounding import check_grounding
from generation.prompt import training_text
from generation.train import encode_example, mean_reply_loss
from generation.writer import best_description, pick_answer


@dataclass(frozen=True)
class GeneratorReport:
    n_dialogues: int
    perplexity: float
    grounding_rate: float
    description_coverage: float
    distinct_2: float
    first_piece_ms: float  # median, one request at a time
    reply_ms: float  # median
    examples: tuple[tuple[str, str, bool], ...]  # (question, reply, grounded) for the report

    def lines(self) -> list[str]:
        return [f"dialogues: {self.n_dialogues}", f"perplexity: {self.perplexity:.2f}",
                f"grounding_rate: {self.grounding_rate:.3f}", f"description_coverage: {self.description_coverage:.3f}",
                f"distinct_2: {self.distinct_2:.3f}", f"first_piece_ms: {self.first_piece_ms:.1f}",
                f"reply_ms: {self.reply_ms:.1f}"]


def evaluate_generator(generator: Generator, samples: Sequence[Sample], products: Iterable[str],
                       batch_size: int = 16, timed: int = 20, candidates: int = 1,
                       answer_candidates: int = 1) -> GeneratorReport:
    """Everything is generated as it is served: numbers copied from the sources only, each reply
    the grounded, most fluent of `answer_candidates` samples and each description the best of
    `candidates` (`best_description`)."""
    products = tuple(products)
    encoded = [encode_example(generator.tokenizer, *training_text(s.passages, s.history, s.reply), 512)
               for s in samples]
    perplexity = float(np.exp(mean_reply_loss(generator.model, generator.tokenizer, encoded, batch_size)))
    prompts = {id(s): generator.prompt(s.passages, s.history).text for s in samples}
    answered = [s for s in samples if s.kind != "description"]
    drafted = _generate(generator, answered, prompts, answer_candidates, batch_size)
    replies, grounded = [], []
    for i, sample in enumerate(answered):
        options = drafted[i * answer_candidates : (i + 1) * answer_candidates]
        checks = [check_grounding(r, _sources(sample), products).grounded for r in options]
        fluency = generator.score([prompts[id(sample)]] * len(options), options) if len(options) > 1 else [0.0]
        best = pick_answer(checks, fluency)
        replies.append(options[best])
        grounded.append(checks[best])
    described = [s for s in samples if s.kind == "description"]
    drafts = _generate(generator, described, prompts, candidates, batch_size)
    descriptions = [best_description(drafts[i * candidates : (i + 1) * candidates], s.history[-1][1], s.attributes,
                                     products) for i, s in enumerate(described)]
    covered = [k not in d.missing for s, d in zip(described, descriptions, strict=True) for k in s.attributes]
    first, whole = _latency(generator, [prompts[id(s)] for s in samples[:timed]])
    return GeneratorReport(
        n_dialogues=len(samples),
        perplexity=perplexity,
        grounding_rate=float(np.mean(grounded)) if grounded else float("nan"),
        description_coverage=float(np.mean(covered)) if covered else float("nan"),
        distinct_2=distinct_n([*replies, *(d.text for d in descriptions)], 2),
        first_piece_ms=first,
        reply_ms=whole,
        examples=tuple((s.history[-1][1], r, g) for s, r, g in list(zip(answered, replies, grounded, strict=True))[:8]),
    )


def _sources(sample: Sample) -> list[str]:
    return [*sample.passages, *(t for _, t in sample.history)]


def _generate(generator: Generator, samples: Sequence[Sample], prompts: Mapping[int, str], copies: int,
              batch_size: int) -> list[str]:
    """`copies` replies per sample, in sample order, numbers only from each sample's sources."""
    repeated = [prompts[id(s)] for s in samples for _ in range(copies)]
    sources = [_sources(s) for s in samples for _ in range(copies)]
    replies: list[str] = []
    for i in range(0, len(repeated), batch_size):
        replies += generator.generate(repeated[i : i + batch_size], sources=sources[i : i + batch_size])
    return replies


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [tuple(words[i : i + n]) for t in texts for words in [t.lower().split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _latency(generator: Generator, prompts: Sequence[str]) -> tuple[float, float]:
    firsts, wholes = [], []
    for prompt in prompts:
        started = time.perf_counter()
        first = None
        for pieces in generator.decode([prompt]):
            if first is None and pieces[0]:
                first = time.perf_counter() - started
        wholes.append(time.perf_counter() - started)
        firsts.append(first if first is not None else wholes[-1])
    return float(np.median(firsts) * 1e3) if firsts else 0.0, float(np.median(wholes) * 1e3) if wholes else 0.0
