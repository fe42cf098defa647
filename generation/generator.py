"""Serving the generator: KV-cached, batched decoding, and an async stream of text per request.

`Generator.decode` runs one batch of prompts to the end (a `DecodingBatch`: KV-cached, one token
per row per step, numbers copied from each row's sources only).

`StreamingGenerator` is the asyncio front: concurrent requests join one batch that a worker
thread keeps decoding (continuous batching), and every caller gets its text as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.constraints import NumberCopy, TokenDigits
from generation.decoding import DecodingBatch, Row
from generation.fastpath import CompactForward
from generation.prompt import END, Prompt, build_prompt
from generation.sampling import SamplingSettings

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
        # What decoding calls: the same weights without transformers' per-call machinery where
        # the architecture allows it (`generation.fastpath`), else the model itself.
        self.forward = CompactForward(model) if CompactForward.supports(model) else model
        self.tokenizer = tokenizer
        self.settings = settings
        self._seed = seed
        self._end_id = tokenizer.convert_tokens_to_ids(END)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self._end_id

    @classmethod
    def load(cls, model_dir: str | Path, settings: SamplingSettings = SamplingSettings(), threads: int = 0,
             seed: int | None = None) -> Generator:
        """Load a directory written by `shopbot train generator`."""
        model_dir = Path(model_dir)
        if not (model_dir / METADATA_FILE).is_file():
            raise GeneratorNotFoundError(model_dir)
        if threads > 0:
            torch.set_num_threads(threads)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        return cls(model, AutoTokenizer.from_pretrained(model_dir), settings, seed)

    @cached_property
    def digits(self) -> TokenDigits:
        """Which tokens write digits: what copy-constrained decoding needs of the vocabulary."""
        return TokenDigits.of(self.tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, passages: Sequence[str], history: Sequence[tuple[str, str]],
               settings: SamplingSettings | None = None) -> Prompt:
        """The prompt for this conversation, cut to leave room for the reply in the model's window."""
        budget = self.model.config.n_positions - (settings or self.settings).max_new_tokens
        return build_prompt(passages, history, self.count_tokens, budget)

    def generate(self, prompts: Sequence[str], settings: SamplingSettings | None = None,
                 sources: Sequence[Sequence[str] | None] = ()) -> list[str]:
        """Whole replies for `prompts`, decoded as one batch."""
        texts = [""] * len(prompts)
        for pieces in self.decode(prompts, settings, sources=sources):
            texts = [t + p for t, p in zip(texts, pieces, strict=True)]
        return [t.strip() for t in texts]

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        """The mean log-probability of each reply (and its end) after its prompt: how fluent the model
        finds it. A garbled sample scores far below a clean one, so the best of a few can be kept."""
        rows = []
        for prompt, reply in zip(prompts, replies, strict=True):
            context = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer = self.tokenizer(" " + reply, add_special_tokens=False)["input_ids"] + [self._end_id]
            rows.append((context, answer))
        longest = max((len(c) + len(a) for c, a in rows), default=0)
        ids = torch.full((len(rows), longest), self._pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (context, answer) in enumerate(rows):
            ids[row, : len(context) + len(answer)] = torch.tensor(context + answer)
            mask[row, : len(context) + len(answer)] = 1
        log_probs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        scores = []
        for row, (context, answer) in enumerate(rows):
            positions = torch.arange(len(context) - 1, len(context) + len(answer) - 1)
            scores.append(float(log_probs[row, positions, ids[row, positions + 1]].mean()))
        return scores

    def decode(self, prompts: Sequence[str], settings: SamplingSettings | None = None,
               cancelled: Sequence[threading.Event] = (),
               sources: Sequence[Sequence[str] | None] = ()) -> Iterator[list[str]]:
        """Per step, the new text of every row ("" for a row with nothing new or already done).

        A row ends at the end-of-text token, at a stop sequence (cut before it) or after
        `max_new_tokens`; the batch ends when every row has (or is `cancelled`). A row with
        `sources` (its passages and conversation) may only write numbers found in them.
        """
        if not prompts:
            return
        batch = self.batch()
        rows = [self.row(settings, source, stop) for source, stop in
                zip((*sources, *[None] * (len(prompts) - len(sources))),
                    (*cancelled, *[None] * (len(prompts) - len(cancelled))), strict=True)]
        batch.add(prompts, rows)
        position = {row: i for i, row in enumerate(rows)}
        while batch.rows:
            pieces = [""] * len(rows)
            for row, piece in batch.step(self.advance):
                pieces[position[row]] = piece
            yield pieces

    def batch(self) -> DecodingBatch:
        """An empty batch that rows (`row`) can join and leave between steps."""
        rng = torch.Generator().manual_seed(self._seed) if self._seed is not None else None
        return DecodingBatch(self.forward, self.tokenizer, self._end_id, self._pad_id, rng)

    def row(self, settings: SamplingSettings | None = None, sources: Sequence[str] | None = None,
            cancelled: threading.Event | None = None, owner: object = None) -> Row:
        """A reply to decode; with `sources`, it may only write numbers found in them."""
        copy = NumberCopy(self.digits, sources) if sources is not None else None
        return Row(settings or self.settings, copy, cancelled, owner)

    def advance(self, row: Row, token: int) -> str:
        """Add `token` to `row`; the text that is now certain to be part of the reply."""
        settings = row.settings
        if token == self._end_id:
            row.done = True
            return row.emit(row.text)
        row.ids.append(token)
        # Decode only what is new: byte-level tokens decode piece by piece once a piece ends on
        # a whole character (a character whose bytes span two tokens reads "\ufffd" until then).
        row.pending.append(token)
        piece = str(self.tokenizer.decode(row.pending, skip_special_tokens=True))
        text = row.text + piece
        if not piece.endswith("\ufffd"):
            row.text, row.pending = text, []
        cut = min((i for i in (text.find(s) for s in settings.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            row.done = True
            return row.emit(text[:cut])
        if len(row.ids) >= settings.max_new_tokens:
            row.done = True
            return row.emit(row.text)
        # Hold back the beginning of what may become a stop sequence.
        held = max((k for stop in settings.stop for k in range(1, len(stop)) if row.text.endswith(stop[:k])),
                   default=0)
        return row.emit(row.text[: len(row.text) - held])


@dataclass
class _Request:
    prompt: str
    row: Row
    pieces: asyncio.Queue[str | BaseException | None]


class StreamingGenerator:
    """Concurrent requests decoded together; each caller iterates over its own reply's pieces.

    One worker thread owns a `DecodingBatch`. Between two steps it admits queued requests while
    the batch has room (`max_batch`), so a request never waits for others to finish; when idle it
    waits for the first request, then `max_wait` for company, so a burst is prefilled together.
    """

    def __init__(self, generator: Generator, max_batch: int = 8, max_wait: float = 0.005) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self.generator = generator
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []  # rows in the batch after each admission (benchmarks read it)

    async def stream(self, prompt: str, settings: SamplingSettings | None = None,
                     sources: Sequence[str] | None = None) -> AsyncIterator[str]:
        """The reply to `prompt`, piece by piece as it is decoded; numbers only from `sources` if given."""
        loop = asyncio.get_running_loop()
        request = _Request(prompt, self.generator.row(settings, sources, threading.Event()), asyncio.Queue())
        request.row.owner = (loop, request.pieces)
        self._start()
        self._queue.put(request)
        try:
            while (piece := await request.pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            assert request.row.cancelled is not None
            request.row.cancelled.set()  # a caller who stops listening frees its row

    async def complete(self, prompt: str, settings: SamplingSettings | None = None,
                       sources: Sequence[str] | None = None) -> str:
        return "".join([piece async for piece in self.stream(prompt, settings, sources)]).strip()

    async def aclose(self) -> None:
        """Finish what is being decoded, then stop the worker."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            await asyncio.to_thread(worker.join)

    def _start(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="generator", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        """The worker thread: admit, step, deliver, until `aclose`."""
        batch = self.generator.batch()
        closing = False
        while not closing or batch.rows:
            admitted: list[_Request] = []
            if not batch.rows and not closing:  # idle: wait for work, then a moment for company
                first = self._queue.get()
                if first is None:
                    return
                admitted.append(first)
                time.sleep(self._max_wait)
            while not closing and len(batch.rows) + len(admitted) < self._max_batch:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    closing = True
                else:
                    admitted.append(request)
            try:
                if admitted:
                    batch.add([r.prompt for r in admitted], [r.row for r in admitted])
                    self.batch_sizes.append(len(batch.rows))
                pieces = batch.step(self.generator.advance)
            except Exception as exc:  # every caller in the batch sees it raised from `stream`
                for row in [*batch.rows, *(r.row for r in admitted if r.row not in batch.rows)]:
                    _deliver([(row, exc), (row, None)])
                batch = self.generator.batch()
                continue
            _deliver([*((row, piece) for row, piece in pieces if piece),
                      *((row, None) for row, _ in pieces if row.done)])


def _deliver(items: list[tuple[Row, str | BaseException | None]]) -> None:
    """Hand pieces to their callers' queues, one call into each event loop per step."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
    for row, item in items:
        loop, pieces = row.owner
        by_loop.setdefault(loop, []).append((pieces, item))
    for loop, puts in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody is listening
            loop.call_soon_threadsafe(_put_all, puts)


def _put_all(puts: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for pieces, item in puts:
        pieces.put_nowait(item)
