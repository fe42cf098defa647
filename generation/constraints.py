"""Copy-constrained decoding: the generator may only write numbers it was shown.

A small model writes "your order 10032 ships in 3 days" fluently whether or not 10032 and 3 are
in its passages. The grounding check catches that after the fact and the reply is lost; this
stops it while decoding instead. Every number the reply writes ("10023", "4.95") must be a
number found in the sources (passages and conversation), so at each step a token is banned when
it would start or continue a number that no source number begins with, or end one that is only
the beginning of one ("100" when the sources say "10023", "2" when they say "2.50"). Prices,
order numbers, dates and phone numbers are all numbers, so one rule covers them; the grounding
check still reads the finished reply (it also compares values, e.g. "4.95" against "4,95").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # "10023", "4.95", "1.299,00": one number each
_SEPARATORS = ".,"


class TokenDigits:
    """The tokens of a vocabulary that can write part of a number; built once per tokenizer."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = tuple(texts)
        # A token with a digit, or only separators ("." may be a decimal point or a full stop).
        self.numeric = tuple(i for i, t in enumerate(texts)
                             if any(c.isdigit() for c in t) or (t and all(c in _SEPARATORS for c in t)))
        self.plain = torch.ones(len(texts), dtype=torch.bool)  # every other token
        self.plain[list(self.numeric)] = False

    @classmethod
    def of(cls, tokenizer: object) -> TokenDigits:
        """For a Hugging Face tokenizer (byte-level tokens decoded one at a time)."""
        size = len(tokenizer)  # type: ignore[arg-type]
        return cls([tokenizer.decode([i]) for i in range(size)])  # type: ignore[attr-defined]


class NumberCopy:
    """The tokens one reply may not write next, given the numbers of its sources.

    The state is the number being written (digits, and a separator that may turn out to be a
    decimal point); a token is simulated character by character from it.
    """

    def __init__(self, digits: TokenDigits, sources: Iterable[str]) -> None:
        self._digits = digits
        self._numbers = {n for text in sources for n in _NUMBER.findall(text)}
        self._prefixes = {n[:k] for n in self._numbers for k in range(1, len(n) + 1)}
        self._open = ""  # the number at the end of the reply so far ("4." after "costs 4.")
        self._banned: dict[str, torch.Tensor] = {}  # per open number: the banned token ids

    def banned(self) -> torch.Tensor:
        """Ids of the tokens that would write a number no source holds (1-d, may be empty)."""
        if self._open not in self._banned:
            self._banned[self._open] = self._compute(self._open)
        return self._banned[self._open]

    def advance(self, token: int) -> None:
        """Record the token just written."""
        text = self._digits.texts[token] if 0 <= token < len(self._digits.texts) else ""
        self._open = self._run(self._open, text) or ""

    def _compute(self, open_number: str) -> torch.Tensor:
        banned = [i for i in self._digits.numeric if self._run(open_number, self._digits.texts[i]) is None]
        ids = torch.tensor(banned, dtype=torch.long)
        if not self._may_end(open_number):  # any other token would end the number where it stands
            ids = torch.cat([ids, torch.nonzero(self._digits.plain).flatten()])
        return ids

    def _run(self, number: str, text: str) -> str | None:
        """The open number after writing `text`, or None when `text` writes a number no source holds."""
        for char in text:
            if char.isdigit():
                number += char
                if number not in self._prefixes:
                    return None
            elif char in _SEPARATORS and number[-1:].isdigit() and number + char in self._prefixes:
                number += char  # a decimal point, if a digit follows
            else:
                if not self._may_end(number):
                    return None
                number = ""
        return number

    def _may_end(self, number: str) -> bool:
        """May the reply stop writing `number` here? ("4." ends as "4" and a full stop.)"""
        number = number.rstrip(_SEPARATORS)
        return not number or number in self._numbers


def ban(logits: torch.Tensor, constraints: Sequence[NumberCopy | None]) -> torch.Tensor:
    """`logits` (batch, vocab) with every row's banned tokens at -inf (in place)."""
    for row, constraint in enumerate(constraints):
        if constraint is not None:
            banned = constraint.banned()
            if banned.numel():
                logits[row, banned] = float("-inf")
    return logits
