"""Is the shopper upset? A small lexicon score with negation, for handing frustrated shoppers to people.

It only has to notice a run of clearly unhappy messages ("this is ridiculous", "worst service
ever", "I'm fed up"), not to grade every message: the engine hands a conversation over after
several negative turns in a row, never after one.
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NEGATIVE = _words("""
angry annoyed annoying appalled appalling awful bad broken cheated complain complaint disappointed
disappointing disgusted disgraceful dreadful fed frustrated frustrating furious garbage hate hopeless
horrible incompetent infuriating joke lied liars ludicrous mad mess miserable nightmare outraged
pathetic poor rediculous ridiculous rubbish sad scam shameful shocking sick stupid terrible unacceptable
unbelievable unhappy upset useless waste worse worst wtf
""")
_POSITIVE = _words("""
amazing appreciate awesome brilliant excellent fantastic glad good great happy helpful love lovely nice
perfect pleased super thank thanks wonderful
""")
_NEGATORS = _words("not no never isn't wasn't don't doesn't didn't can't cannot won't hardly")
_WORD = re.compile(r"[a-z']+")


def mood(text: str) -> float:
    """From -1 (clearly unhappy) to 1 (clearly happy); 0 for neutral or unknown."""
    words = _WORD.findall(text.lower())
    score = 0.0
    for i, word in enumerate(words):
        value = -1.0 if word in _NEGATIVE else 1.0 if word in _POSITIVE else 0.0
        if value and any(w in _NEGATORS for w in words[max(0, i - 3):i]):
            value = -1.0 if value > 0 else 0.5  # "not helpful" is negative, "not bad" only mildly positive
        score += value
    if text.count("!") >= 2 or (sum(c.isupper() for c in text) > 8 and text.upper() == text):
        score -= 0.5 if score < 0 else 0.0  # shouting makes an unhappy message more so
    return max(-1.0, min(1.0, score / 2))


def is_negative(text: str) -> bool:
    return mood(text) <= -0.5
