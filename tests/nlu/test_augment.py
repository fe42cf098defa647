"""Training noise: careless versions of a message that keep what it means."""

from __future__ import annotations

import random
import re

from nlu.augment import noisy

MESSAGES = [
    "Where is my order 10023? It was due on Monday.",
    "I want a refund for the Harbor Rain Jacket, please!",
    "can I pay with PayPal",
    "hi",
    "my email is jo@example.com and the invoice is INV-2024-0042",
]


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def test_noise_is_seeded() -> None:
    first = [noisy(m, random.Random(5)) for m in MESSAGES]
    again = [noisy(m, random.Random(5)) for m in MESSAGES]
    other = [noisy(m, random.Random(6)) for m in MESSAGES]

    assert first == again and first != other


def test_numbers_and_short_words_are_never_touched() -> None:
    rng = random.Random(1)
    for _ in range(300):
        for message in MESSAGES:
            out = noisy(message, rng)
            assert re.findall(r"\d+", out) == re.findall(r"\d+", message)
            assert "@" in out or "@" not in message  # an email keeps its shape


def test_each_version_is_a_few_keystrokes_away() -> None:
    rng = random.Random(2)
    changed = 0
    for _ in range(200):
        message = MESSAGES[1]
        out = noisy(message, rng, max_typos=2)
        before, after = _letters(message), _letters(out)
        changed += before != after
        assert abs(len(before) - len(after)) <= 2
        # At most two edits of one or two letters each: most of the message survives in order.
        assert _common(before, after) >= len(before) - 4
    assert changed >= 190  # a typo nearly every time (a swap of two equal letters changes nothing)


def _common(a: str, b: str) -> int:
    """Length of the longest common subsequence."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
