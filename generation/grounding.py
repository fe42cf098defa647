"""Is every fact in a generated reply backed by the passages or the conversation?

A small generator copies well when it was trained to, and invents fluently when it was not sure.
So before a generated reply is sent, its checkable facts are pulled out (URLs, emails, prices,
dates, order numbers, other numbers, and the names of the shop's products) and each must appear
in what the model was shown: the retrieved passages or the conversation. Numbers are compared by
value ("€4.95" backs "4.95 EUR"), the rest as text, ignoring case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

_PATTERNS = (  # most specific first: a span claimed by one kind is not read again as another
    ("url", re.compile(r"\bhttps?://[^\s<>\"')]+|\bwww\.[^\s<>\"')]+|\b[a-z0-9-]+\.(?:com|de|eu|org|net|shop|io)"
                       r"(?:/[^\s<>\"')]*)?", re.IGNORECASE)),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b|\b\d{1,2}(?:st|nd|rd|th)?\s+"
                        r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", re.IGNORECASE)),
    ("price", re.compile(r"€\s?\d+(?:[.,]\d{1,2})?|\b\d+(?:[.,]\d{1,2})?\s?(?:€|eur\b|euros?\b)", re.IGNORECASE)),
    ("order_id", re.compile(r"\b\d{5,6}\b")),
    ("number", re.compile(r"\b\d+(?:[.,]\d+)?\b")),
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class Fact:
    kind: str  # url | email | date | price | order_id | number | product
    text: str


@dataclass(frozen=True)
class Grounding:
    facts: tuple[Fact, ...]
    unsupported: tuple[Fact, ...]

    @property
    def grounded(self) -> bool:
        return not self.unsupported


def extract_facts(text: str, products: Iterable[str] = ()) -> list[Fact]:
    """The checkable facts in `text`, in order of kind; product names from `products`."""
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if any(start < match.end() and match.start() < end for start, end in taken):
                continue
            taken.append(match.span())
            facts.append(Fact(kind, match.group().rstrip(".,")))
    lowered = text.lower()
    products = tuple(products)
    facts += [Fact("product", name) for name in products if name and name.lower() in lowered]
    named = _product_names(products)
    if named is not None:  # names the model made up: "Tidewater Rain Jacket" looks like a product
        seen = {f.text.lower() for f in facts}
        facts += [Fact("product", m.group()) for m in named.finditer(text) if m.group().lower() not in seen]
    return facts


@lru_cache(maxsize=8)
def _product_names(products: tuple[str, ...]) -> re.Pattern[str] | None:
    """Capitalised words before a kind of product the shop's names end in ("... Rain Jacket", "... Parka")."""
    kinds = sorted({name.rsplit(" ", 1)[1] for name in products if " " in name}, key=len, reverse=True)
    if not kinds:
        return None
    return re.compile(rf"\b(?!(?:{_NOT_NAMES})\b)(?:[A-Z][\w'-]*\s+){{1,3}}(?:{'|'.join(map(re.escape, kinds))})\b")


_NOT_NAMES = "|".join(("The", "A", "An", "Our", "Your", "This", "That", "These", "Those", "Try", "With", "For", "And",
                       "Or", "We", "You", "It", "Yes", "No", "Sorry", "Both", "Each", "Every", "My", "If", "In", "On"))


def check_grounding(reply: str, sources: Sequence[str], products: Iterable[str] = ()) -> Grounding:
    """Which of the reply's facts appear nowhere in `sources` (passages and conversation turns)."""
    facts = extract_facts(reply, products)
    corpus = "\n".join(sources)
    lowered = corpus.lower()
    numbers = {_value(n) for n in _NUMBER.findall(corpus)}
    unsupported = tuple(f for f in facts if not _supported(f, lowered, numbers))
    return Grounding(tuple(facts), unsupported)


def _supported(fact: Fact, lowered: str, numbers: set[float]) -> bool:
    if fact.kind in ("price", "number", "order_id"):
        return all(_value(n) in numbers for n in _NUMBER.findall(fact.text))
    return fact.text.lower() in lowered


def _value(number: str) -> float:
    return float(number.replace(",", "."))
