"""Training, decoding and streaming the generator (a tiny model: behaviour, not quality)."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from generation.decoding import Row
from generation.generator import METADATA_FILE, Generator, GeneratorNotFoundError, StreamingGenerator
from generation.prompt import BOT, END, KNOWLEDGE, SPECIAL_TOKENS, USER
from generation.sampling import SamplingSettings, next_tokens
from generation.train import GeneratorResult, train_generator, train_tokenizer
from tests.generation.conftest import TINY

GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=12)
PROMPTS = [f"{KNOWLEDGE} Harbor Rain Jacket - price: €129.00. {USER} how much is the harbor jacket? {BOT}",
           f"{USER} hi {BOT}"]


def test_training_writes_model_tokenizer_and_metadata(tiny_generator: GeneratorResult) -> None:
    files = {p.name for p in tiny_generator.output_dir.iterdir()}
    metadata = json.loads((tiny_generator.output_dir / METADATA_FILE).read_text())

    assert {"config.json", "model.safetensors", "tokenizer.json", METADATA_FILE} <= files
    assert math.isfinite(tiny_generator.validation_perplexity) and tiny_generator.validation_perplexity > 1
    assert metadata["metrics"]["steps"] == 30 and metadata["config"]["n_layer"] == 1
    assert metadata["metrics"]["validation_perplexity"] == round(tiny_generator.validation_perplexity, 3)


def test_the_tokenizer_keeps_the_markers_whole(tiny_dir: Path) -> None:
    tokenizer = Generator.load(tiny_dir).tokenizer

    for marker in SPECIAL_TOKENS:
        assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1
    text = "Größe 38? ☂️ ok"  # byte-level: nothing is unknown
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_a_gpt2_checkpoint_can_be_fine_tuned(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """`generation.base_model` pointing at a GPT-2 directory (here a tiny random one)."""
    train, validation = corpus
    tokenizer = train_tokenizer([s.reply for s in train], 300)
    base = tmp_path / "base"
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(base)
    tokenizer.save_pretrained(base)

    result = train_generator(train[:40], validation[:5], tmp_path / "tuned",
                             replace(TINY, base_model=str(base), steps=3), progress=False)

    assert result.steps == 3 and (tmp_path / "tuned" / METADATA_FILE).is_file()
    assert Generator.load(tmp_path / "tuned").generate(PROMPTS[1:], GREEDY)[0] is not None


def test_a_missing_generator_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GeneratorNotFoundError, match="shopbot train generator"):
        Generator.load(tmp_path)


def test_kv_cached_batched_decoding_matches_a_plain_loop_per_prompt(tiny_dir: Path) -> None:
    generator = Generator.load(tiny_dir, GREEDY)

    batched = generator.generate(PROMPTS)

    for prompt, text in zip(PROMPTS, batched, strict=True):
        assert text == _plain_greedy(generator, prompt, GREEDY.max_new_tokens)


def _plain_greedy(generator: Generator, prompt: str, max_new: int) -> str:
    """No cache, no padding, no batch: the whole sequence through the model for every token."""
    ids = generator.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    end = generator.tokenizer.convert_tokens_to_ids(END)
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(max_new):
            token = int(generator.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == end:
                break
            new.append(token)
    return str(generator.tokenizer.decode(new, skip_special_tokens=True)).strip()


def test_streamed_pieces_add_up_to_the_reply_and_respect_stop_and_length(tiny_dir: Path) -> None:
    generator = Generator.load(tiny_dir, GREEDY)
    whole = generator.generate(PROMPTS[:1])[0]

    pieces = [p[0] for p in generator.decode(PROMPTS[:1])]

    assert "".join(pieces).strip() == whole
    assert len(pieces) <= GREEDY.max_new_tokens
    if len(whole) > 3:  # a stop sequence cuts the reply just before it
        stop = whole[2:4]
        cut = generator.generate(PROMPTS[:1], replace(GREEDY, stop=(stop,)))[0]
        assert stop not in cut and whole.startswith(cut)


def test_sampling_rules() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    none: list[list[int]] = [[]]

    assert next_tokens(logits, none, SamplingSettings(temperature=0.0)).item() == 1
    # A tiny nucleus holds only the most likely token, whatever the temperature.
    seeded = torch.Generator().manual_seed(0)
    picks = {next_tokens(logits, none, SamplingSettings(temperature=2.0, top_p=0.01), seeded).item() for _ in range(20)}
    assert picks == {1}
    # The penalty pushes a token the reply already used below the runner-up.
    penalised = SamplingSettings(temperature=0.0, repetition_penalty=2.0)
    assert next_tokens(logits, [[1]], penalised).item() == 2


async def test_concurrent_streams_are_decoded_together_and_each_gets_its_own_reply(tiny_dir: Path) -> None:
    generator = Generator.load(tiny_dir, GREEDY)
    streaming = StreamingGenerator(generator, max_batch=8, max_wait=0.05)
    expected = [generator.generate([p])[0] for p in PROMPTS]

    replies = await asyncio.gather(*(streaming.complete(p) for p in PROMPTS))
    await streaming.aclose()

    assert replies == expected
    assert streaming.batch_sizes == [2]


async def test_a_listener_who_leaves_does_not_stop_the_others(tiny_dir: Path) -> None:
    generator = Generator.load(tiny_dir, replace(GREEDY, max_new_tokens=30))
    streaming = StreamingGenerator(generator, max_batch=8, max_wait=0.05)

    async def first_piece() -> str:
        async for piece in streaming.stream(PROMPTS[0]):
            return piece
        return ""

    _, full = await asyncio.gather(first_piece(), streaming.complete(PROMPTS[1]))
    await streaming.aclose()

    assert full == generator.generate([PROMPTS[1]])[0]


async def test_a_request_joins_the_batch_being_decoded_and_gets_the_reply_it_gets_alone(tiny_dir: Path) -> None:
    long = replace(GREEDY, max_new_tokens=40, stop=())
    generator = Generator.load(tiny_dir, long)
    alone = [generator.generate([p])[0] for p in PROMPTS]
    streaming = StreamingGenerator(generator, max_batch=8, max_wait=0.0)
    first_pieces: list[str] = []

    async def first() -> str:
        async for piece in streaming.stream(PROMPTS[0]):
            first_pieces.append(piece)
        return "".join(first_pieces).strip()

    async def second() -> str:
        while len(first_pieces) < 3:  # the first reply is well under way
            await asyncio.sleep(0.001)
        return await streaming.complete(PROMPTS[1])

    replies = await asyncio.gather(first(), second())
    await streaming.aclose()

    assert list(replies) == alone  # joining mid-way changes nobody's reply (padding is masked)
    assert streaming.batch_sizes[:2] == [1, 2]  # the second request joined the running batch


def test_a_finished_rows_slot_is_taken_by_the_next_request_with_the_same_reply(tiny_dir: Path) -> None:
    generator = Generator.load(tiny_dir, replace(GREEDY, max_new_tokens=30, stop=()))
    short = replace(GREEDY, max_new_tokens=2, stop=())
    prompts = [PROMPTS[0], PROMPTS[1], f"{USER} where is my parcel? {BOT}", f"{USER} thanks {BOT}"]
    alone = [generator.generate([p])[0] for p in prompts]
    batch = generator.batch()
    rows = [generator.row(), generator.row(short), generator.row()]
    batch.add(prompts[:2], rows[:2])
    texts: dict[int, str] = {}

    def run_until(done: Row) -> None:
        while not done.done:
            for row, piece in batch.step(generator.advance):
                texts[id(row)] = texts.get(id(row), "") + piece

    run_until(rows[1])  # the short reply ends: its slot is free, nothing is copied
    assert len(batch.slots) == 2 and batch.rows == [rows[0]]
    batch.add([prompts[2]], [rows[2]])  # joins in that slot, its earlier columns masked out
    assert batch.slots == [rows[0], rows[2]]
    last = generator.row()
    batch.add([prompts[3]], [last])  # no free slot: a new one
    assert len(batch.slots) == 3
    for row in (rows[0], rows[2], last):
        run_until(row)

    assert texts[id(rows[0])].strip() == alone[0]
    assert texts[id(rows[2])].strip() == alone[2]
    assert texts[id(last)].strip() == alone[3]
    assert batch.slots == [] and batch.rows == []  # all done: the batch is empty again


def test_the_model_finds_its_own_greedy_reply_more_fluent_than_shuffled_words(tiny_dir: Path) -> None:
    generator = Generator.load(tiny_dir, GREEDY)
    reply = generator.generate(PROMPTS[:1])[0]
    words = reply.split()
    shuffled = " ".join(words[::-1] + ["zebra", "quartz"])

    fluent, garbled = generator.score([PROMPTS[0]] * 2, [reply, shuffled])

    assert fluent > garbled and fluent < 0
