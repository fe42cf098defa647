"""The rule-based entity extractor, as a table of messages and what must (not) come out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

import pytest

from nlu import entities
from nlu.dataset import load_examples
from nlu.entities import _folded, extract_entities
from tests.conftest import ROOT

CATALOGUE = (
    "Aurora Merino Sweater",
    "Slim Jeans",
    "Slim Jeans Long",
    "Navy Wool Coat",
    "Trailblazer Sneakers",
)

CASES = [
    # order ids: bare, with "#", with "order no." and friends
    ("where is my order 10023?", [("order_id", "10023")]),
    ("status of #10023 pls", [("order_id", "10023")]),
    ("order no. 123456 hasn't arrived", [("order_id", "123456")]),
    ("order no.10023", [("order_id", "10023")]),
    ("Order number: 10023", [("order_id", "10023")]),
    ("orders 10023 and 10031", [("order_id", "10023"), ("order_id", "10031")]),
    ("my order is 10023. thanks", [("order_id", "10023")]),
    ("1234", []),  # too short
    ("1234567", []),  # part of a longer number
    ("it cost 12345.50 euros", []),  # a decimal amount, not an id
    ("ref A12345", []),  # glued to letters
    ("ship to Hauptstr. 5, 10435 Berlin", []),  # a postcode before a city
    ("ship order 10023 to 10435 Berlin", [("order_id", "10023")]),
    ("#10435 Berlin", [("order_id", "10435")]),  # an explicit marker wins over the city rule
    # contact details and invoices
    ("mail me at jo.doe+shop@example.co.uk", [("email", "jo.doe+shop@example.co.uk")]),
    ("user10023@example.com", [("email", "user10023@example.com")]),
    ("call +49 30 5550 1234", [("phone", "+49 30 5550 1234")]),
    ("call 0049 30 55501234 today", [("phone", "0049 30 55501234")]),
    ("my mobile is 0176 1234 5678", [("phone", "0176 1234 5678")]),
    ("+1-202-555-0143 or order 10023", [("phone", "+1-202-555-0143"), ("order_id", "10023")]),
    ("delivered on 05-06-2026", []),  # a date is not a phone number
    ("invoice INV-2026-10023 is wrong", [("invoice_number", "INV-2026-10023")]),
    ("inv-2026-10023", [("invoice_number", "inv-2026-10023")]),
    # products: case-insensitive, catalogue spelling, longest name first
    ("is the aurora merino sweater warm?", [("product", "Aurora Merino Sweater")]),
    ("SLIM JEANS LONG back in stock?", [("product", "Slim Jeans Long")]),
    ("slim jeans or slim jeans long", [("product", "Slim Jeans"), ("product", "Slim Jeans Long")]),
    ("the Navy Wool Coat", [("product", "Navy Wool Coat")]),  # not also the colour "navy"
    ("trailblazersneakers", []),  # a missing space is not tolerated
    ("slim jeansy", []),
    # sizes: only next to the word "size"
    ("do you have it in size L?", [("size", "L")]),
    ("size: xl please", [("size", "XL")]),
    ("the size is M", [("size", "M")]),
    ("an XXL size", [("size", "XXL")]),
    ("XS-size", [("size", "XS")]),
    ("shoe size 38", [("size", "38")]),
    ("size EU 42.5", [("size", "42.5")]),
    ("I'm in L.A. with an M", []),  # letters without "size"
    ("what size should I take", []),
    ("size guide", []),
    ("size 10023", [("order_id", "10023")]),  # too long for a shoe size
    # colours: a fixed word list, whole words
    ("the sweater in navy or dark green", [("colour", "navy"), ("colour", "dark green")]),
    ("Black, not GREY", [("colour", "black"), ("colour", "grey")]),
    ("in Forest Green or dusty rose?", [("colour", "forest green"), ("colour", "dusty rose")]),
    ("is oatmeal warmer than sage", [("colour", "oatmeal"), ("colour", "sage")]),
    ("redirect me to the bluetooth page", []),
    # several at once, ordered by position
    (
        "order #10023: Slim Jeans in blue, size M, mail a@b.de",
        [
            ("order_id", "10023"),
            ("product", "Slim Jeans"),
            ("colour", "blue"),
            ("size", "M"),
            ("email", "a@b.de"),
        ],
    ),
    ("", []),
    ("hello there", []),
    # case-insensitive as the patterns are: Turkish dotted / dotless i, the long s; values normalised
    ("a WHİTE shirt", [("colour", "white")]),
    ("whıte sneakers in sıze 42", [("colour", "white"), ("size", "42")]),
    ("the ſage one", [("colour", "sage")]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_extract_entities(text: str, expected: list[tuple[str, str]]) -> None:
    entities = extract_entities(text, CATALOGUE)

    assert [(e.entity, e.value) for e in entities] == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_offsets_index_into_the_given_text(text: str, expected: list[tuple[str, str]]) -> None:
    for entity in extract_entities(text, CATALOGUE):
        surface = text[entity.start : entity.end]
        # Values are the text itself, or a normalised spelling of it (catalogue name, case).
        assert _folded(surface) == _folded(entity.value)


def test_products_are_only_found_when_a_catalogue_is_given() -> None:
    assert extract_entities("the Slim Jeans in L size") == extract_entities("the Slim Jeans in L size", ())
    assert [e.entity for e in extract_entities("the Slim Jeans in L size")] == ["size"]


def test_entities_never_overlap() -> None:
    text = "INV-2026-10023, +49 30 5550 1234, 10023@shop.de, Navy Wool Coat navy size 38"
    spans = sorted((e.start, e.end) for e in extract_entities(text, CATALOGUE))

    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(spans))
    assert len(spans) == 6


def test_extraction_is_deterministic() -> None:
    text = "order 10023, Slim Jeans Long in size L, red"

    assert extract_entities(text, CATALOGUE) == extract_entities(text, tuple(reversed(CATALOGUE)))


def _every_rule(text: str, products: tuple[str, ...]) -> tuple[entities.Entity, ...]:
    """`extract_entities` as it was before rules were skipped: every pattern runs on every message."""
    found: list[entities.Entity] = []
    rules = (
        entities._matches(text, entities._EMAIL, "email"),
        entities._matches(text, entities._INVOICE, "invoice_number"),
        entities._phones(text),
        entities._order_ids(text),
        _every_product(text, products),
        entities._sizes(text),
        (entities.Entity("colour", _folded(m.group()), *m.span()) for m in entities._COLOUR.finditer(text)),
    )
    for rule in rules:
        for entity in rule:
            if not any(entity.start < e.end and e.start < entity.end for e in found):
                found.append(entity)
    return tuple(sorted(found, key=lambda e: (e.start, e.end)))


def _every_product(text: str, products: tuple[str, ...]) -> Iterator[entities.Entity]:
    """Every catalogue name's pattern searched, longest name first."""
    claimed: list[tuple[int, int]] = []
    for name in sorted({p.strip() for p in products} - {""}, key=lambda p: (-len(p), p)):
        for match in re.finditer(r"(?<!\w)" + re.escape(name) + r"(?!\w)", text, re.IGNORECASE):
            if not any(match.start() < end and start < match.end() for start, end in claimed):
                claimed.append(match.span())
                yield entities.Entity("product", name, *match.span())


def test_skipping_rules_that_cannot_match_changes_no_result() -> None:
    data = ROOT / "data"
    robustness = [e.text for e in load_examples(data / "tests" / "robustness.yml")]
    texts = [text for text, _ in CASES] + robustness
    variants = [v for t in texts for v in (t, t.upper(), t.replace("i", "ı"), t.replace("I", "İ"), t.replace("s", "ſ"))]
    variants += [e.text for e in load_examples(data / "nlu.yml")]
    catalogue = (*CATALOGUE, *robustness[:20], "(RED) tee")  # whole messages as names: each matches its own

    differ = [t for t in variants if extract_entities(t, catalogue) != _every_rule(t, catalogue)]

    assert not differ
    assert sum(bool(_every_rule(t, catalogue)) for t in variants) > 500  # the texts do hold entities
    assert sum(e.entity == "product" for t in variants for e in _every_rule(t, catalogue)) > 100
