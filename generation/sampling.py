"""Choosing the next token: repetition penalty, temperature, nucleus (top-p), greedy at temperature 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How replies are sampled (`generation.*` in config.yml)."""

    temperature: float = 0.7  # 0 = greedy: always the most likely token
    top_p: float = 0.9  # sample from the smallest set of tokens holding this much probability
    repetition_penalty: float = 1.2  # > 1 discourages repeating a token the reply already has
    max_new_tokens: int = 96
    stop: tuple[str, ...] = ()  # the reply ends before the first of these


def next_tokens(
    logits: torch.Tensor, generated: Sequence[Sequence[int]], settings: SamplingSettings,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row from `logits` (batch, vocab), given each row's tokens generated so far.

    The penalty only looks at the reply's own tokens, never the prompt's: a grounded reply is
    supposed to repeat what the passages say.
    """
    logits = logits.float().clone()
    if settings.repetition_penalty != 1.0:
        for row, tokens in enumerate(generated):
            if tokens:
                seen_ids = torch.tensor(sorted(set(tokens)), dtype=torch.long)
                seen = logits[row, seen_ids]
                # CTRL's penalty: shrink positive scores, push negative ones further down.
                logits[row, seen_ids] = torch.where(seen > 0, seen / settings.repetition_penalty,
                                                    seen * settings.repetition_penalty)
    if settings.temperature <= 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        ordered, order = probabilities.sort(dim=-1, descending=True)
        # Keep a token while the mass before it is under top_p: the top token always survives.
        drop = ordered.cumsum(dim=-1) - ordered >= settings.top_p
        ordered = ordered.masked_fill(drop, 0.0)
        probabilities = torch.zeros_like(probabilities).scatter_(1, order, ordered)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
