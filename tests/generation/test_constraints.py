"""Copy-constrained decoding: a reply writes only the numbers its sources hold."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from generation.constraints import NumberCopy, TokenDigits, ban
from generation.generator import Generator
from generation.sampling import SamplingSettings

VOCAB = ["a", " order", "1", "2", "0", "3", "10", "100", " 10", "23", " 1002", "3 days", "5.", "99", " 4.", "95", ".",
         "00", " €"]
SOURCES = ["Order 10023 costs 4.95 EUR."]


def _allowed(copy: NumberCopy) -> list[str]:
    banned = set(copy.banned().tolist())
    return [t for i, t in enumerate(VOCAB) if i not in banned]


def test_only_runs_that_begin_a_source_number_may_start() -> None:
    copy = NumberCopy(TokenDigits(VOCAB), SOURCES)

    assert _allowed(copy) == ["a", " order", "1", "10", "100", " 10", " 1002", " 4.", ".", " €"]


def test_an_open_number_must_go_on_until_it_is_one_of_the_sources() -> None:
    digits = TokenDigits(VOCAB)
    copy = NumberCopy(digits, SOURCES)

    copy.advance(VOCAB.index(" 10"))
    assert _allowed(copy) == ["0"]  # "100" is the only way on towards 10023
    copy.advance(VOCAB.index("0"))
    assert _allowed(copy) == ["2", "23"]  # nothing may end the reply at "100"
    copy.advance(VOCAB.index("23"))
    assert "1" not in _allowed(copy) and " order" in _allowed(copy)  # 10023 is whole: it may end


def test_a_decimal_number_is_copied_whole() -> None:
    digits = TokenDigits(VOCAB)
    copy = NumberCopy(digits, ["Delivery costs €2.50 and takes 2 to 3 days."])

    for token in (" €", "2", "."):
        assert token in _allowed(copy)
        copy.advance(VOCAB.index(token))
    assert "00" not in _allowed(copy) and "0" not in _allowed(copy)  # €2.00 is not in the sources
    copy = NumberCopy(digits, ["Delivery costs €2.50."])
    copy.advance(VOCAB.index("2"))
    assert _allowed(copy) == ["."]  # "2" alone is not a number the sources hold: only "2.50" is


def test_without_numbers_in_the_sources_no_digit_can_be_written() -> None:
    copy = NumberCopy(TokenDigits(VOCAB), ["We ship to every country in the EU."])

    assert _allowed(copy) == ["a", " order", ".", " €"]


def test_ban_sets_only_the_constrained_rows() -> None:
    digits = TokenDigits(VOCAB)
    logits = torch.zeros((2, len(VOCAB)))

    ban(logits, [NumberCopy(digits, []), None])

    assert torch.isinf(logits[0, VOCAB.index("99")]) and not torch.isinf(logits[1]).any()


def test_sampled_replies_write_no_number_outside_their_sources(tiny_dir: Path) -> None:
    hot = SamplingSettings(temperature=1.5, top_p=1.0, repetition_penalty=1.0, max_new_tokens=48)
    sources = ["Order 10023 was shipped on 2026-11-20 and costs 49.90 EUR."]
    prompt = f"<|knowledge|>{sources[0]}<|user|>where is my order 10023<|bot|>"
    allowed = set(re.findall(r"\d+", sources[0]))
    free: list[str] = []
    for seed in range(12):
        copied = Generator.load(tiny_dir, hot, seed=seed).generate([prompt], sources=[sources])[0]
        assert set(re.findall(r"\d+", copied)) <= allowed, copied
        free += re.findall(r"\d+", Generator.load(tiny_dir, hot, seed=seed).generate([prompt])[0])
    assert set(free) - allowed  # unconstrained, the same model does invent numbers
