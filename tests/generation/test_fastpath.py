"""The plain-tensor GPT-2 forward gives the model's own logits, with padding and a KV cache."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM

from generation.decoding import DecodingBatch, Row
from generation.fastpath import CompactForward
from generation.generator import Generator
from generation.sampling import SamplingSettings


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=64, n_embd=48, n_layer=2, n_head=4)
    return GPT2LMHeadModel(config).eval()


def _left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    longest = max(map(len, rows))
    ids = torch.zeros((len(rows), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, tokens in enumerate(rows):
        ids[i, longest - len(tokens):] = torch.tensor(tokens)
        mask[i, longest - len(tokens):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def test_prefill_logits_match_the_model_on_every_real_position(model: GPT2LMHeadModel) -> None:
    ids, mask, positions = _left_padded([[5, 9, 13, 2, 40, 7], [3, 3, 81], [60]])

    ours = CompactForward(model)(ids, mask, positions).logits
    with torch.inference_mode():
        theirs = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits

    real = mask.bool()
    assert torch.allclose(ours[real], theirs[real], atol=1e-4)
    assert torch.isfinite(ours).all()  # padding positions attend to themselves: no empty softmax


def test_cached_steps_match_the_model_without_a_cache(model: GPT2LMHeadModel) -> None:
    forward = CompactForward(model)
    ids, mask, positions = _left_padded([[5, 9, 13, 2], [33, 8]])
    output = forward(ids, mask, positions, logits_to_keep=1)
    assert output.logits.shape == (2, 1, 97)
    cache, everything = output.cache, ids
    for token in ([11, 12], [50, 3], [7, 7]):
        new = torch.tensor(token)[:, None]
        mask = torch.cat([mask, torch.ones((2, 1), dtype=torch.long)], dim=1)
        positions = positions[:, -1:] + 1
        output = forward(new, mask, positions, cache=cache)
        cache, everything = output.cache, torch.cat([everything, new], dim=1)

        full_positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            expected = model(input_ids=everything, attention_mask=mask, position_ids=full_positions).logits[:, -1]
        assert torch.allclose(output.logits[:, -1], expected, atol=1e-4)
    assert cache.layers[0].keys.shape == (2, 4, everything.shape[1], 12)


def test_generators_use_it_for_gpt2_only() -> None:
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    neo = GPTNeoForCausalLM(GPTNeoConfig(vocab_size=50, max_position_embeddings=32, hidden_size=16, num_layers=1,
                                         num_heads=2, attention_types=[[["global"], 1]]))
    tokenizer = _Tokenizer()

    assert isinstance(Generator(gpt2, tokenizer).forward, CompactForward)
    assert Generator(neo, tokenizer).forward is neo
    with pytest.raises(ValueError, match="not a plain GPT-2"):
        CompactForward(neo)


class _Tokenizer:
    pad_token_id = 0

    def convert_tokens_to_ids(self, token: str) -> int:
        return 1


def test_a_free_slot_never_runs_past_the_models_last_position() -> None:
    """Row B ends near the end of a 24-position window while row A goes on for 15 more steps."""
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=24, n_embd=16, n_layer=1, n_head=2)).eval()

    def tokenizer(text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [int(t) for t in text.split()]}

    def advance(row: Row, token: int) -> str:
        row.ids.append(token)
        row.done = len(row.ids) >= row.settings.max_new_tokens
        return f" {token}"

    def greedy(limit: int) -> SamplingSettings:
        return SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=limit)

    def decode(prompts: list[str], rows: list[Row]) -> None:
        batch = DecodingBatch(CompactForward(model), tokenizer, end_id=49, pad_id=0)
        batch.add(prompts, rows)
        while batch.rows:
            batch.step(advance)

    a, b = Row(greedy(18)), Row(greedy(3))
    decode(["1 2 3", " ".join(str(i % 40 + 1) for i in range(20))], [a, b])
    alone = Row(greedy(18))
    decode(["1 2 3"], [alone])

    assert len(b.ids) == 3 and a.ids == alone.ids  # A ran to the end of its window, as it does alone
