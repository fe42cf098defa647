"""Long replies cut into messages a channel accepts, on paragraph, line, sentence or word boundaries."""

from __future__ import annotations

import re

_BOUNDARIES = (
    re.compile(r"\n\s*\n"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"(?<=[.!?…])\s+"),  # sentences
    re.compile(r"\s+"),  # words
)


def utf16_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int) -> list[str]:
    """`text` as consecutive parts of at most `limit` UTF-16 units, cut at the coarsest boundary in reach.

    Joining the parts with the whitespace they were cut at gives back the text; no part is empty.
    A word longer than `limit` is cut inside (never inside a character).
    """
    if limit < 2:
        raise ValueError(f"limit must be at least 2 (one character of any kind), got {limit}")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_length(rest) <= limit:
            parts.append(rest)
            break
        cut, resume = _cut(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[resume:].lstrip()
    return parts


def _cut(text: str, limit: int) -> tuple[int, int]:
    """Where the first part ends and the next begins: the last boundary of the coarsest kind in reach."""
    window = _prefix(text, limit)
    for boundary in _BOUNDARIES:
        matches = [m for m in boundary.finditer(window) if m.start() > 0]
        if matches:
            last = matches[-1]
            return last.start(), last.end()
    return len(window), len(window)  # one very long word


def _prefix(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units."""
    units = 0
    for end, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:end]
    return text
