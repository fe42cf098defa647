"""Rule-based entity extraction: order ids, contact details, invoices, products, sizes, colours.

Deterministic regular expressions, no model. Each rule runs in a fixed priority order and a
later match that overlaps an earlier one is dropped, so the digits of an e-mail address, an
invoice number or a phone number never also come out as an order id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

from nlu.parse import Entity

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_INVOICE = re.compile(r"\bINV-\d{4}-\d{3,6}\b", re.IGNORECASE)
# International (+49 30 5550 1234, 0049 ...) or national with a trunk zero (030 5550 1234);
# groups separated by single spaces or hyphens. The digit count is checked in `_phones`.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}|00\d{1,3}|\(?0\d{1,5}\)?)(?:[ -]?\(?\d{2,}\)?){1,5}(?!\d)")
# A 5/6-digit number not glued to other digits, letters or decimal marks ("12.50", "A12345").
# The marker ("#", "order", "order no.", "order number:") makes it explicit, see `_order_ids`.
_ORDER = re.compile(
    r"(?<![\w.,+/-])"
    r"(?P<marker>#\s*|\border\s*(?:no\.?|nr\.?|number|#)?\s*(?::\s*|is\s+)?#?)?"
    r"(?P<id>\d{5,6})(?!\w|[.,]\d)",
    re.IGNORECASE,
)
# "10435 Berlin": a bare 5-digit number followed by a capitalised word is read as a postcode.
_CITY_AFTER = re.compile(r"\s+[A-ZÄÖÜ][a-zäöüß]+")
_SIZE_WORD = r"\bsize\s*(?::\s*|is\s+|in\s+|eu\s+|uk\s+|us\s+)?"
_LETTER_SIZE = re.compile(
    _SIZE_WORD + r"(?P<a>XXS|XS|S|M|L|XL|XXL)\b(?!')|\b(?P<b>XXS|XS|S|M|L|XL|XXL)[ -]size\b",
    re.IGNORECASE,
)
_SHOE_SIZE = re.compile(_SIZE_WORD + r"(?P<a>\d{1,2}(?:[.,]5)?)(?![\d.,]*\d)", re.IGNORECASE)
_SIZE_HINT = re.compile("size", re.IGNORECASE)  # in both size patterns, matched as they match it ("SIZE", "sıze")
# Common colour words plus the demo catalogue's (oatmeal, sage, ...); a shade word in front
# ("dark green", "forest green", "dove grey") is kept as part of the value.
_COLOUR_WORDS = """black white grey gray red blue navy green olive yellow orange pink purple brown
    beige cream burgundy khaki teal turquoise silver gold charcoal ivory maroon lilac mint camel
    oatmeal sand sage rust moss ochre emerald indigo terracotta cognac blush rose"""
COLOURS = tuple(_COLOUR_WORDS.split())
SHADES = ("light", "dark", "pale", "forest", "dove", "dusty", "midnight", "heather")
_COLOUR_SET = frozenset(COLOURS)
_LETTERS = re.compile(r"[a-z]+")
_WORD = re.compile(r"\w+")
_COLOUR = re.compile(rf"\b(?:(?:{'|'.join(SHADES)})\s+)?(?:{'|'.join(COLOURS)})\b", re.IGNORECASE)


def extract_entities(text: str, products: Sequence[str] = ()) -> tuple[Entity, ...]:
    """Find entities in `text`, ordered by position; `products` are catalogue names to match.

    Most messages hold no digit, no "@" and no "size": a rule whose pattern cannot match for
    want of one is skipped (each check admits everything its pattern could match).
    """
    found: list[Entity] = []
    digits = sum(map(str.isdigit, text))  # isdigit: every character \d matches, and more
    sized = _SIZE_HINT.search(text) is not None
    candidates = (
        _matches(text, _EMAIL, "email") if "@" in text else (),
        _matches(text, _INVOICE, "invoice_number") if digits >= 7 else (),
        _phones(text) if digits >= 8 else (),
        _order_ids(text) if digits >= 5 else (),
        _products(text, products),
        _sizes(text) if sized else (),
        _colours(text),
    )
    for rule in candidates:  # a generator per rule, so each sees what earlier rules claimed
        for entity in rule:
            if not any(entity.start < e.end and e.start < entity.end for e in found):
                found.append(entity)
    return tuple(sorted(found, key=lambda e: (e.start, e.end)))


def _matches(text: str, pattern: re.Pattern[str], name: str) -> Iterator[Entity]:
    for match in pattern.finditer(text):
        yield Entity(name, match.group(), match.start(), match.end())


def _phones(text: str) -> Iterator[Entity]:
    for match in _PHONE.finditer(text):
        value = match.group()
        digits = sum(ch.isdigit() for ch in value)
        # National numbers need more digits than a date such as 05-06-2026 has.
        minimum = 8 if value.startswith(("+", "00")) else 9
        if minimum <= digits <= 15:
            yield Entity("phone", value, match.start(), match.end())


def _order_ids(text: str) -> Iterator[Entity]:
    for match in _ORDER.finditer(text):
        start, end = match.span("id")
        is_postcode = len(match["id"]) == 5 and _CITY_AFTER.match(text, end) is not None
        if is_postcode and not match["marker"]:
            continue
        yield Entity("order_id", match["id"], start, end)


def _products(text: str, products: Sequence[str]) -> Iterator[Entity]:
    """Catalogue names, longest first so "Slim Jeans Long" wins over "Slim Jeans".

    Only the names whose first word the message holds are tried (`_catalogue`): a shop's
    hundreds of names would otherwise each cost a pattern search on every message.
    """
    if not products:
        return
    by_first_word = _catalogue(tuple(products))
    words = {"", *_WORD.findall(_folded(text))}  # "": names with no word in them, always tried
    candidates = sorted((c for w in words for c in by_first_word.get(w, ())), key=lambda c: (-len(c[0]), c[0]))
    claimed: list[tuple[int, int]] = []
    for name, pattern in candidates:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in claimed):
                continue
            claimed.append(match.span())
            # The catalogue spelling, not the shopper's, so actions can look it up directly.
            yield Entity("product", name, match.start(), match.end())


@lru_cache(maxsize=8)
def _catalogue(products: tuple[str, ...]) -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    """Each catalogue name (trimmed) with its compiled pattern, filed under its first word as
    `_folded` spells it. A name matches where the message holds it whole between non-word
    characters, so the message then holds that word whole too."""
    by_first_word: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for name in {p.strip() for p in products} - {""}:
        pattern = re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)", re.IGNORECASE)
        first = next(iter(_WORD.findall(_folded(name))), "")
        by_first_word.setdefault(first, []).append((name, pattern))
    return by_first_word


def _sizes(text: str) -> Iterator[Entity]:
    for pattern in (_LETTER_SIZE, _SHOE_SIZE):
        for match in pattern.finditer(text):
            group = "a" if match["a"] is not None else "b"
            start, end = match.span(group)
            yield Entity("size", match[group].upper(), start, end)


def _colours(text: str) -> Iterator[Entity]:
    if _COLOUR_SET.isdisjoint(_LETTERS.findall(_folded(text))):  # most messages name none: skip the long pattern
        return
    for match in _COLOUR.finditer(text):
        yield Entity("colour", _folded(match.group()), match.start(), match.end())


def _folded(text: str) -> str:
    """`text` in lower case as a case-insensitive pattern reads it: "ſ" is "s", and the Turkish
    dotted and dotless i ("WHİTE", "whıte") are "i"."""
    return text.casefold().replace("ı", "i").replace("\u0307", "")
