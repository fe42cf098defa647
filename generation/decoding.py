"""One batch of replies being decoded, which rows may join and leave between steps.

Each step samples one token for every row from the logits of the step before, hands out the text
that is now certain, frees the slots of the rows that ended and runs the model once on the new
tokens, reusing the attention keys and values of everything before (the KV cache). Prompts are
padded on the left so every row's next token sits in the same column; a row that joins is
prefilled on its own and takes a free slot (continuous batching): a request that arrives while
others are being decoded starts at the next step instead of waiting for the whole batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from generation.constraints import NumberCopy, ban
from generation.sampling import SamplingSettings, next_tokens

#: unused columns on the left of the cache that are cut (a copy of the cache) once there are this many
TRIM_COLUMNS = 48


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
    """The rows decoded together, their KV cache, attention mask, positions and next-token logits.

    Rows live in slots (one row of the cache, mask, positions and logits each). A row that ends
    frees its slot without touching the cache; a row that joins is prefilled on its own and written
    into a free slot, right-aligned at the current column, its earlier columns masked out. Only
    when there is no free slot (or its prompt is wider than the batch) is its cache stacked under
    the others, and only when most slots are free are they compacted away: copying the cache on
    every join and end took a fifth of the time of a busy batch.
    """

    def __init__(self, model: Any, tokenizer: Any, end_id: int, pad_id: int,
                 rng: torch.Generator | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.end_id = end_id
        self.pad_id = pad_id
        self.rng = rng
        self.slots: list[Row | None] = []  # None: a free slot
        self._reset()

    @property
    def rows(self) -> list[Row]:
        """The rows being decoded, in slot order."""
        return [row for row in self.slots if row is not None]

    def _reset(self) -> None:
        self.slots = []
        self._cache: Any = None
        self._mask = torch.zeros((0, 0), dtype=torch.long)  # (slots, cached columns)
        self._positions = torch.zeros((0, 1), dtype=torch.long)  # (slots, 1): each slot's last position
        self._logits = torch.zeros((0, 0))  # (slots, vocab): what the next token is sampled from

    @torch.inference_mode()
    def add(self, prompts: Sequence[str], rows: Sequence[Row]) -> None:
        """Prefill `prompts` (one per row) and put the rows into free slots, or new ones."""
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
        logits = output.logits[:, -1].float()
        if not self.slots:
            self._cache, self._mask, self._positions, self._logits = output.cache, mask, positions[:, -1:], logits
            self.slots = list(rows)
            return
        width = self._mask.shape[1]
        free = [i for i, row in enumerate(self.slots) if row is None] if longest <= width else []
        placed = min(len(free), len(rows))
        for new, slot in enumerate(free[:placed]):
            for layer, fresh in zip(self._cache.layers, output.cache.layers, strict=True):
                layer.keys[slot, :, width - longest:] = fresh.keys[new]
                layer.values[slot, :, width - longest:] = fresh.values[new]
            self._mask[slot] = 0
            self._mask[slot, width - longest:] = mask[new]
            self._positions[slot] = positions[new, -1]
            self._logits[slot] = logits[new]
            self.slots[slot] = rows[new]
        if placed < len(rows):
            rest = torch.arange(placed, len(rows))
            self._mask = _stack_left_padded(self._cache, self._mask, _Rows(output.cache, rest), mask[rest])
            self._positions = torch.cat([self._positions, positions[rest, -1:]])
            self._logits = torch.cat([self._logits, logits[rest]])
            self.slots += rows[placed:]

    @torch.inference_mode()
    def step(self, advance: Callable[[Row, int], str]) -> list[tuple[Row, str]]:
        """One token for every row; (row, new text) for each, finished rows included, then dropped.

        `advance(row, token)` records the token and returns the text now certain (it sets
        `row.done` when the reply ends).
        """
        occupied = [(i, row) for i, row in enumerate(self.slots) if row is not None]
        live, rows = [i for i, _ in occupied], [row for _, row in occupied]
        logits = self._logits[live]  # a copy: banning tokens in it leaves the batch's logits alone
        if any(row.copy for row in rows):
            logits = ban(logits, [row.copy for row in rows])
        chosen = torch.full((len(self.slots),), self.pad_id, dtype=torch.long)  # free slots write padding
        chosen[live] = self._sample(logits, rows)
        pieces = []
        for slot, row, token in zip(live, rows, chosen[live].tolist(), strict=True):
            if row.cancelled is not None and row.cancelled.is_set():
                row.done = True
            else:
                if row.copy is not None:
                    row.copy.advance(token)
                pieces.append((row, advance(row, token)))
            if row.done:
                self.slots[slot] = None
        live = [slot for slot in live if self.slots[slot] is not None]  # the rows still being decoded
        if not live:
            self._reset()
            return pieces
        # Mostly free slots (no need to compute them), or many columns on the left that no row
        # reads any more (attention would keep paying for them): copy what is used, once.
        start = int(self._mask[live].any(dim=0).long().argmax())  # the first column a live row reads
        if len(live) < len(self.slots) - len(live) or start >= TRIM_COLUMNS:
            chosen = self._compact(chosen, live, start)
            live = list(range(len(live)))
        self._mask = torch.cat([self._mask, torch.ones((len(self.slots), 1), dtype=self._mask.dtype)], dim=1)
        # A free slot's position stays at 0: counting on, it would pass the model's last position
        # while the other rows run (its output is never read, but the lookup would fail).
        occupied_now = torch.zeros((len(self.slots), 1), dtype=self._positions.dtype)
        occupied_now[live] = 1
        self._positions = (self._positions + 1) * occupied_now
        output = self.model(input_ids=chosen[:, None], attention_mask=self._mask, position_ids=self._positions,
                            cache=self._cache, use_cache=True)
        self._cache, self._logits = output.cache, output.logits[:, -1].float()
        return pieces

    def _sample(self, logits: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
        """One token per row; rows with the same settings are sampled together."""
        chosen = torch.zeros(len(rows), dtype=torch.long)
        groups: dict[SamplingSettings, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.settings, []).append(i)
        for settings, members in groups.items():
            chosen[members] = next_tokens(logits[members], [rows[i].ids for i in members], settings, self.rng)
        return chosen

    def _compact(self, chosen: torch.Tensor, live: list[int], start: int) -> torch.Tensor:
        """Only the `live` slots, without the columns left of `start` that none of them reads;
        the tokens of those slots."""
        index = torch.tensor(live, dtype=torch.long)
        self.slots = [self.slots[i] for i in live]
        self._mask, self._positions, self._logits = self._mask[index], self._positions[index], self._logits[index]
        self._mask = self._mask[:, start:]
        for layer in self._cache.layers:
            layer.keys, layer.values = layer.keys[index, :, start:], layer.values[index, :, start:]
        return chosen[index]


class _Rows:
    """Some rows of a cache, shaped like one (`.layers[i].keys/.values`)."""

    def __init__(self, cache: Any, index: torch.Tensor) -> None:
        self.layers = [_Layer(layer.keys[index], layer.values[index]) for layer in cache.layers]


@dataclass
class _Layer:
    keys: torch.Tensor
    values: torch.Tensor


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
