"""Micro-batching: many concurrent `await parse(text)` calls, one forward pass.

A transformer on CPU classifies a batch of 32 messages in far less than 32 times the time of
one (FIELD_NOTES: ~1,800 msg/s batched against ~400 msg/s one by one, int8), but the engine sees
one message per conversation. The batcher sits between: callers queue their text and await a
future; one worker task groups what is queued into a batch, runs the sync batch function in a
worker thread (the event loop keeps serving while torch computes) and hands each caller its own
result, in order.

When a batch closes: at `max_batch` messages, or `max_wait` seconds after its first message
arrived. The window counts from arrival, so time spent queued behind the previous batch uses it
up (a busy batcher hardly waits), and an idle one delays a lone message by at most `max_wait`
(`max_wait=0`: never wait, batch only what is already queued).

Batches of at most `inline_batch` messages run on the event loop itself: handing one message to
a worker thread and back costs about as much as classifying it (~1 ms of wake-ups on 2 cores),
and a lone message means nobody else is waiting for the loop anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nlu.parse import Parse

BatchFunction = Callable[[list[str]], Sequence[Parse]]


class BatcherClosedError(RuntimeError):
    """`parse` was called after `aclose`."""


@dataclass
class _Request:
    text: str
    result: asyncio.Future[Parse]
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """An asyncio front for a sync `parse_batch(list[str]) -> list[Parse]`."""

    def __init__(
        self, parse_batch: BatchFunction, *, max_batch: int = 32, max_wait: float = 0.002, inline_batch: int = 0
    ) -> None:
        if max_batch < 1 or max_wait < 0 or inline_batch < 0:
            raise ValueError(f"need max_batch >= 1, max_wait >= 0, inline_batch >= 0; got {max_batch}, {max_wait}, "
                             f"{inline_batch}")
        self._parse_batch = parse_batch
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._inline_batch = inline_batch
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None  # started by the first call, in its loop
        self._closed = False

    async def parse(self, text: str) -> Parse:
        """Classify one message as part of whatever batch it lands in."""
        if self._closed:
            raise BatcherClosedError("the micro-batcher is closed")
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="nlu-micro-batcher")
        request = _Request(text, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.result

    async def aclose(self) -> None:
        """Stop taking messages, finish the ones already queued, stop the worker."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)  # after every queued request: they are all answered
            await self._worker

    async def _run(self) -> None:
        """The worker: collect a batch, compute it, answer its callers; until the close marker."""
        while True:
            batch, closing = await self._collect()
            if batch:
                await self._answer(batch)
            if closing:
                return

    async def _collect(self) -> tuple[list[_Request], bool]:
        """The next batch, and whether the close marker came after it."""
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = first.arrived + self._max_wait
        await asyncio.sleep(0)  # callers scheduled in this same tick (a gather) queue up first
        while len(batch) < self._max_batch:
            try:
                request = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if request is None:
                return batch, True
            batch.append(request)
        return batch, False

    async def _answer(self, batch: list[_Request]) -> None:
        """Run one batch (in a worker thread unless it is small); a failure fails this batch's callers only."""
        texts = [r.text for r in batch]
        try:
            if len(batch) <= self._inline_batch:
                parses = self._parse_batch(texts)
            else:
                parses = await asyncio.to_thread(self._parse_batch, texts)
            if len(parses) != len(batch):
                raise RuntimeError(f"batch function returned {len(parses)} parses for {len(batch)} messages")
        except Exception as exc:  # handed to the callers, who each see it raised from `parse`
            for request in batch:
                if not request.result.done():  # a caller may have given up (cancelled) meanwhile
                    request.result.set_exception(exc)
            return
        except asyncio.CancelledError:  # the worker itself is cancelled (loop shutting down)
            for request in batch:
                request.result.cancel()
            raise
        for request, parse in zip(batch, parses, strict=True):
            if not request.result.done():
                request.result.set_result(parse)
