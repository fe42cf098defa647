"""Serving the generator: KV-cached, batched decoding, and an async stream of text per request.

`Generator.decode` runs one batch of prompts to the end, one token per row per step, reusing
the attention keys and values of everything before (the KV cache): each step costs one token's
worth of compute instead of the whole sequence's. Prompts of different lengths are padded on the
left so every row's next token sits in the same column.

`StreamingGenerator` is the asyncio front: concurrent requests queue up, a worker takes what is
queued (up to `max_batch`), decodes it as one batch in a worker thread and hands every request
its text as it comes, piece by piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.prompt import END, Prompt, build_prompt
from generation.sampling import SamplingSettings, next_tokens

METADATA_FILE = "shopbot_generator.json"


class GeneratorNotFoundError(FileNotFoundError):
    """No trained generator at `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"no trained generator in {self.path}: run `shopbot train generator` first")


class Generator:
    """A causal LM and its tokenizer, with the decoding loop ShopBot serves."""

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings = SamplingSettings(),
                 seed: int | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self._seed = seed
        self._end_id = tokenizer.convert_tokens_to_ids(END)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self._end_id

    @classmethod
    def load(cls, model_dir: str | Path, settings: SamplingSettings = SamplingSettings(), threads: int = 0,
             seed: int | None = None) -> Generator:
        model_dir = Path(model_dir)
        if not (model_dir / METADATA_FILE).is_file():
            raise GeneratorNotFoundError(model_dir)
        if threads > 0:
            torch.set_num_threads(threads)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        return cls(model, AutoTokenizer.from_pretrained(model_dir), settings, seed)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, passages: Sequence[str], history: Sequence[tuple[str, str]],
               settings: SamplingSettings | None = None) -> Prompt:
        """The prompt for this conversation, cut to leave room for the reply in the model's window."""
        budget = self.model.config.n_positions - (settings or self.settings).max_new_tokens
        return build_prompt(passages, history, self.count_tokens, budget)

    def generate(self, prompts: Sequence[str], settings: SamplingSettings | None = None) -> list[str]:
        """Whole replies for `prompts`, decoded as one batch."""
        texts = [""] * len(prompts)
        for pieces in self.decode(prompts, settings):
            texts = [t + p for t, p in zip(texts, pieces, strict=True)]
        return [t.strip() for t in texts]

    @torch.inference_mode()
    def decode(self, prompts: Sequence[str], settings: SamplingSettings | None = None,
               cancelled: Sequence[threading.Event] = ()) -> Iterator[list[str]]:
        """Per step, the new text of every row ("" for a row with nothing new or already done).

        A row ends at the end-of-text token, at a stop sequence (cut before it) or after
        `max_new_tokens`; the batch ends when every row has (or is `cancelled`).
        """
        settings = settings or self.settings
        if not prompts:
            return
        ids, mask = self._left_padded(prompts)  # (batch, longest prompt)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generator = torch.Generator().manual_seed(self._seed) if self._seed is not None else None
        rows = [_Row() for _ in prompts]
        generated = torch.zeros((len(prompts), 0), dtype=torch.long)
        output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        for _ in range(settings.max_new_tokens):
            chosen = next_tokens(output.logits[:, -1], generated, settings, generator)  # (batch,)
            done = _finished(rows, cancelled)
            chosen = torch.where(torch.tensor(done), torch.full_like(chosen, self._pad_id), chosen)
            generated = torch.cat([generated, chosen[:, None]], dim=1)
            yield [self._advance(row, int(token), settings) if not d else "" for row, token, d in
                   zip(rows, chosen.tolist(), done, strict=True)]
            if all(_finished(rows, cancelled)):
                return
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1
            output = self.model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions,
                                cache=output.cache, use_cache=True)

    def _left_padded(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] or [self._end_id] for p in prompts]
        longest = max(map(len, encoded))
        ids = torch.full((len(encoded), longest), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), longest), dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, longest - len(tokens):] = torch.tensor(tokens)
            mask[row, longest - len(tokens):] = 1
        return ids, mask

    def _advance(self, row: _Row, token: int, settings: SamplingSettings) -> str:
        """Add `token` to `row`; the text that is now certain to be part of the reply."""
        if token == self._end_id:
            row.done = True
            return row.emit(self._text(row).rstrip("\ufffd"))
        row.ids.append(token)
        text = self._text(row)
        cut = min((i for i in (text.find(s) for s in settings.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            row.done = True
            return row.emit(text[:cut])
        if len(row.ids) >= settings.max_new_tokens:
            row.done = True
            return row.emit(text.rstrip("\ufffd"))
        # Hold back what may still change: a character whose bytes span two tokens ("\ufffd"
        # until the last byte arrives) and the beginning of what may become a stop sequence.
        safe = len(text.rstrip("\ufffd"))
        held = max((k for stop in settings.stop for k in range(1, len(stop)) if text[:safe].endswith(stop[:k])),
                   default=0)
        return row.emit(text[: safe - held])

    def _text(self, row: _Row) -> str:
        return str(self.tokenizer.decode(row.ids, skip_special_tokens=True))


def _finished(rows: Sequence[_Row], cancelled: Sequence[threading.Event]) -> list[bool]:
    """Rows that ended, or whose listener left."""
    return [row.done or (i < len(cancelled) and cancelled[i].is_set()) for i, row in enumerate(rows)]


@dataclass
class _Row:
    ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already handed out
    done: bool = False

    def emit(self, text: str) -> str:
        """The part of `text` not handed out yet."""
        piece = text[self.sent :]
        self.sent = max(self.sent, len(text))
        return piece


@dataclass
class _Request:
    prompt: str
    settings: SamplingSettings
    pieces: asyncio.Queue[str | BaseException | None]
    cancelled: threading.Event = field(default_factory=threading.Event)


class StreamingGenerator:
    """Concurrent requests decoded together; each caller iterates over its own reply's pieces."""

    def __init__(self, generator: Generator, max_batch: int = 8, max_wait: float = 0.005) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self.generator = generator
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # what the worker actually grouped (benchmarks read it)

    async def stream(self, prompt: str, settings: SamplingSettings | None = None) -> AsyncIterator[str]:
        """The reply to `prompt`, piece by piece as it is decoded."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name="generator-batcher")
        request = _Request(prompt, settings or self.generator.settings, asyncio.Queue())
        self._queue.put_nowait(request)
        try:
            while (piece := await request.pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            request.cancelled.set()  # a caller who stops listening frees its row

    async def complete(self, prompt: str, settings: SamplingSettings | None = None) -> str:
        return "".join([piece async for piece in self.stream(prompt, settings)]).strip()

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self._max_wait)  # a short window for others to join
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for group in _same_settings(batch):
                self.batch_sizes.append(len(group))
                await asyncio.to_thread(self._decode, group, loop)

    def _decode(self, group: list[_Request], loop: asyncio.AbstractEventLoop) -> None:
        """In the worker thread: decode `group` and post every piece to its request's queue."""
        def post(request: _Request, item: str | BaseException | None) -> None:
            loop.call_soon_threadsafe(request.pieces.put_nowait, item)

        try:
            steps = self.generator.decode([r.prompt for r in group], group[0].settings, [r.cancelled for r in group])
            for pieces in steps:
                for request, piece in zip(group, pieces, strict=True):
                    if piece:
                        post(request, piece)
        except Exception as exc:  # every caller of this batch sees it raised from `stream`
            for request in group:
                post(request, exc)
            return
        for request in group:
            post(request, None)


def _same_settings(batch: list[_Request]) -> list[list[_Request]]:
    groups: dict[SamplingSettings, list[_Request]] = {}
    for request in batch:
        groups.setdefault(request.settings, []).append(request)
    return list(groups.values())
