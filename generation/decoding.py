"""One batch of replies being decoded, which rows may join and leave between steps.

Each step samples one token for every row from the logits of the step before, hands out the text
that is now certain, drops the rows that ended and runs the model once on the new tokens, reusing
the attention keys and values of everything before (the KV cache). Prompts are padded on the left
so every row's next token sits in the same column; a row that joins is prefilled on its own and
its cache is padded and stacked under the others (continuous batching): a request that arrives
while others are being decoded starts at the next step instead of waiting for the whole batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from generation.constraints import NumberCopy, ban
from generation.sampling import SamplingSettings, next_tokens


@dataclass(eq=False)
class Row:
    """One reply: how it is sampled, what it may copy, and the text decoded so far."""

    settings: SamplingSettings
    copy: NumberCopy | None = None
    cancelled: threading.Event | None = None
    owner: Any = None  # whoever receives the pieces
    ids: list[int] = field(default_factory=list)
    text: str = ""  # the reply decoded so far, up to the last whole character
    pending: list[int] = field(default_factory=list)  # tokens after it (a character cut in two)
    sent: int = 0  # characters already handed out
    done: bool = False

    def emit(self, text: str) -> str:
        """The part of `text` not handed out yet."""
        piece = text[self.sent :]
        self.sent = max(self.sent, len(text))
        return piece


class DecodingBatch:
    """The rows decoded together, their KV cache, attention mask, positions and next-token logits."""

    def __init__(self, model: Any, tokenizer: Any, end_id: int, pad_id: int,
                 rng: torch.Generator | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.end_id = end_id
        self.pad_id = pad_id
        self.rng = rng
        self.rows: list[Row] = []
        self._cache: Any = None
        self._mask = torch.zeros((0, 0), dtype=torch.long)  # (rows, cached columns)
        self._positions = torch.zeros((0, 1), dtype=torch.long)  # (rows, 1): each row's last position
        self._logits = torch.zeros((0, 0))  # (rows, vocab): what the next token is sampled from

    @torch.inference_mode()
    def add(self, prompts: Sequence[str], rows: Sequence[Row]) -> None:
        """Prefill `prompts` (one per row) and stack them under the rows being decoded."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] or [self.end_id] for p in prompts]
        longest = max(map(len, encoded))
        ids = torch.full((len(encoded), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), longest), dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, longest - len(tokens):] = torch.tensor(tokens)
            mask[row, longest - len(tokens):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Only the last position's logits are needed: the LM head is a third of the model's weights.
        output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1)
        if self.rows:
            self._mask = _stack_left_padded(self._cache, self._mask, output.cache, mask)
        else:
            self._cache, self._mask = output.cache, mask
        self._positions = torch.cat([self._positions, positions[:, -1:]])
        logits = output.logits[:, -1].float()
        self._logits = torch.cat([self._logits, logits]) if self.rows else logits
        self.rows += rows

    @torch.inference_mode()
    def step(self, advance: Callable[[Row, int], str]) -> list[tuple[Row, str]]:
        """One token for every row; (row, new text) for each, finished rows included, then dropped.

        `advance(row, token)` records the token and returns the text now certain (it sets
        `row.done` when the reply ends).
        """
        logits = self._logits
        if any(row.copy for row in self.rows):
            logits = ban(logits.clone(), [row.copy for row in self.rows])
        chosen = self._sample(logits)
        pieces = []
        for row, token in zip(self.rows, chosen.tolist(), strict=True):
            if row.cancelled is not None and row.cancelled.is_set():
                row.done = True
                continue
            if row.copy is not None:
                row.copy.advance(token)
            pieces.append((row, advance(row, token)))
        keep = [i for i, row in enumerate(self.rows) if not row.done]
        if len(keep) < len(self.rows):
            self._keep(torch.tensor(keep, dtype=torch.long))
            chosen = chosen[keep]
        if self.rows:
            self._mask = torch.cat([self._mask, torch.ones((len(self.rows), 1), dtype=self._mask.dtype)], dim=1)
            self._positions = self._positions + 1
            output = self.model(input_ids=chosen[:, None], attention_mask=self._mask, position_ids=self._positions,
                                cache=self._cache, use_cache=True)
            self._cache, self._logits = output.cache, output.logits[:, -1].float()
        return pieces

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """One token per row; rows with the same settings are sampled together."""
        chosen = torch.zeros(len(self.rows), dtype=torch.long)
        groups: dict[SamplingSettings, list[int]] = {}
        for i, row in enumerate(self.rows):
            groups.setdefault(row.settings, []).append(i)
        for settings, members in groups.items():
            chosen[members] = next_tokens(logits[members], [self.rows[i].ids for i in members], settings, self.rng)
        return chosen

    def _keep(self, index: torch.Tensor) -> None:
        """Only the rows at `index`; columns that are padding in every remaining row are cut."""
        self.rows = [self.rows[i] for i in index.tolist()]
        if not self.rows:
            self._cache, self._mask = None, torch.zeros((0, 0), dtype=torch.long)
            self._positions, self._logits = torch.zeros((0, 1), dtype=torch.long), torch.zeros((0, 0))
            return
        self._mask, self._positions = self._mask[index], self._positions[index]
        start = int(self._mask.any(dim=0).long().argmax())  # the first column some row still uses
        self._mask = self._mask[:, start:]
        for layer in self._cache.layers:
            layer.keys, layer.values = layer.keys[index, :, start:], layer.values[index, :, start:]


def _stack_left_padded(cache: Any, mask: torch.Tensor, new_cache: Any, new_mask: torch.Tensor) -> torch.Tensor:
    """Stack `new_cache` under `cache` (in place), padding the shorter on the left; the joint mask."""
    width = max(mask.shape[1], new_mask.shape[1])

    def pad(states: torch.Tensor) -> torch.Tensor:  # (rows, heads, columns, head size)
        missing = width - states.shape[2]
        return torch.nn.functional.pad(states, (0, 0, missing, 0)) if missing else states

    for layer, new in zip(cache.layers, new_cache.layers, strict=True):
        layer.keys = torch.cat([pad(layer.keys), pad(new.keys)])
        layer.values = torch.cat([pad(layer.values), pad(new.values)])
    return torch.cat([torch.nn.functional.pad(m, (width - m.shape[1], 0)) for m in (mask, new_mask)])
