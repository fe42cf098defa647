"""`shopbot evaluate generator`: perplexity, grounding rate, diversity and speed on held-out dialogues.

- perplexity: of the reply tokens of the held-out split (what training minimises);
- grounding rate: the share of generated replies whose checkable facts (prices, numbers, dates,
  order numbers, emails, URLs, product names) all appear in that dialogue's passages or turns;
- description coverage: the share of given attribute values that the description states;
- distinct-2: distinct word pairs over all word pairs of the replies (1.0: never repeats itself);
- latency: one reply at a time, time to the first piece and to the whole reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from generation.corpus import Sample
from generation.generator import Generator
from generation.grounding import check_grounding
from generation.prompt import training_text
from generation.train import encode_example, mean_reply_loss


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
                       batch_size: int = 16, timed: int = 20) -> GeneratorReport:
    products = tuple(products)
    encoded = [encode_example(generator.tokenizer, *training_text(s.passages, s.history, s.reply), 512)
               for s in samples]
    perplexity = float(np.exp(mean_reply_loss(generator.model, generator.tokenizer, encoded, batch_size)))
    prompts = [generator.prompt(s.passages, s.history).text for s in samples]
    replies = [r for start in range(0, len(prompts), batch_size)
               for r in generator.generate(prompts[start : start + batch_size])]
    answers = [(s, r) for s, r in zip(samples, replies, strict=True) if s.kind != "description"]
    grounded = [check_grounding(r, [*s.passages, *(t for _, t in s.history)], products).grounded for s, r in answers]
    described = [(s, r) for s, r in zip(samples, replies, strict=True) if s.kind == "description"]
    covered = [v.lower() in r.lower() for s, r in described for v in s.attributes.values()]
    first, whole = _latency(generator, prompts[:timed])
    return GeneratorReport(
        n_dialogues=len(samples),
        perplexity=perplexity,
        grounding_rate=float(np.mean(grounded)) if grounded else float("nan"),
        description_coverage=float(np.mean(covered)) if covered else float("nan"),
        distinct_2=distinct_n(replies, 2),
        first_piece_ms=first,
        reply_ms=whole,
        examples=tuple((s.history[-1][1], r, g) for (s, r), g in list(zip(answers, grounded, strict=True))[:8]),
    )


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
