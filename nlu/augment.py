"""Shopper-style noise for training messages: typos, no punctuation, shouting.

Real shoppers write "wher is my pakage" and "REFUND??". The training data is mostly clean, so
without help the classifier learns that misspelt words are unfamiliar, and unfamiliar means
out of scope once the data has an `out_of_scope` intent full of gibberish. Each epoch, a share
of the training messages is seen through `noisy`: the same intent, written carelessly. Numbers
are never touched (an order number with a typo is another order).
"""

from __future__ import annotations

import random
import re

# Neighbours on a QWERTY keyboard: the typos fingers make.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    key: "".join(row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)) for row in _ROWS for i, key in enumerate(row)
}
_WORD = re.compile(r"[^\W\d_]{3,}")  # letters only, 3 or more: short words and numbers stay as they are
# Sentence punctuation only: "-", "/", "@", "#", "+" hold invoice numbers, emails and phones together.
_PUNCTUATION = str.maketrans("", "", ".,!?;:\"'()")


def noisy(text: str, rng: random.Random, max_typos: int = 2) -> str:
    """`text` with 1..`max_typos` typos in its longer words, sometimes unpunctuated or in one case."""
    words = list(_WORD.finditer(text))
    if words:
        for match in sorted(rng.sample(words, min(len(words), rng.randint(1, max_typos))), key=lambda m: -m.start()):
            text = text[: match.start()] + _typo(match.group(), rng) + text[match.end() :]
    roll = rng.random()
    if roll < 0.3:
        text = " ".join(text.translate(_PUNCTUATION).split())
    elif roll < 0.4:
        text = text.upper()
    elif roll < 0.6:
        text = text.lower()
    return text


def _typo(word: str, rng: random.Random) -> str:
    """One slip of the finger: a letter dropped, doubled, swapped with the next, or a neighbour hit."""
    i = rng.randrange(1, len(word))  # the first letter is rarely the one people get wrong
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2 and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    neighbours = _NEIGHBOURS.get(word[i].lower(), "")
    return word[:i] + rng.choice(neighbours) + word[i + 1 :] if neighbours else word[:i] + word[i + 1 :]
