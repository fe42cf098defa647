"""Personal data in free text: found and replaced by placeholders before it is logged or kept."""

from __future__ import annotations

import re
from collections.abc import Iterable

_EMAIL = re.compile(r"\b[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
# 13-19 digits in groups (card numbers); checked with Luhn so order and tracking numbers survive
_CARD = re.compile(r"(?<![\d+])(?:\d[ -]?){12,18}\d(?!\d)")  # "+49 160 ..." is a phone number
# international or national phone numbers with at least 8 digits
_PHONE = re.compile(r"(?<![\w+/-])(?:\+|00)?\d[\d ()/-]{6,}\d(?!\d)")  # not "INV-2026-10023"
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    is_phone = 8 <= len(digits) <= 15 and not _DATE.fullmatch(match.group().strip())
    return "[phone]" if is_phone else match.group()


def redact(text: str) -> str:
    """`text` with emails, IBANs, card numbers and phone numbers replaced; order numbers are kept."""
    text = _EMAIL.sub("[email]", text)
    text = _IBAN.sub("[iban]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


# A street and house number ("Gartenhofstraße 17", "12 Baker Street", "Calle Mayor 5") or, after a
# comma, a postcode and city (", 10997 Berlin"): what, with a name, locates a person. Case matters
# (street names are capitalised), so "order 10023 is on its way" is not an address.
_ADDRESS = re.compile(
    r"\b[A-ZÄÖÜ][\wäöüß.-]*(?i:stra(?:ss|ß)e|str\.|weg|allee|platz|gasse|ring|damm)\s+\d{1,4}[a-z]?\b"
    r"|\b(?i:calle|avenida|rue|via|piazza|plaza|boulevard|avenue)\s+(?:(?:de|del|la|le|des|di)\s+)?[A-ZÄÖÜ][\w'-]+"
    r"(?:\s+[A-Z][\w'-]+)?\s*,?\s+\d{1,4}[a-z]?\b"
    r"|\b\d{1,4}[a-z]?,?\s+(?:[A-Z][\w'-]+\s+){1,3}(?:Street|St\.|Road|Rd\.|Avenue|Ave\.|Lane|Drive|Way|Close)\b"
    r"|(?:(?<=, )|^)\d{4,5}\s+[A-ZÄÖÜ][a-zäöüß]+(?:[ -][A-ZÄÖÜ][a-zäöüß]+)?\b",
    re.MULTILINE)
_KINDS = {"email": "[email hidden]", "iban": "[IBAN hidden]", "card": "[card number hidden]",
          "phone": "[phone number hidden]", "address": "[address hidden]"}


def find(text: str) -> list[tuple[str, int, int]]:
    """Every (kind, start, end) of personal data in `text`: email, iban, card, phone, address."""
    spans: list[tuple[str, int, int]] = []

    def add(kind: str, match: re.Match[str]) -> None:
        if not any(s < match.end() and match.start() < e for _, s, e in spans):
            spans.append((kind, match.start(), match.end()))

    for match in _EMAIL.finditer(text):
        add("email", match)
    for match in _IBAN.finditer(text):
        add("iban", match)
    for match in _CARD.finditer(text):
        if _card(match) != match.group():
            add("card", match)
    for match in _PHONE.finditer(text):
        if _phone(match) != match.group():
            add("phone", match)
    for match in _ADDRESS.finditer(text):
        add("address", match)
    return sorted(spans, key=lambda span: span[1])


def mask_foreign(text: str, known: Iterable[str], own_domains: Iterable[str] = ()) -> tuple[str, list[str]]:
    """`text` with personal data that appears in none of the `known` texts masked; the kinds masked.

    `known` is what may be repeated: the shopper's own messages and details in this conversation
    and the shop's public contact data. Compared without spaces and case ("+49 30 555" = "+4930555").
    Email addresses at one of `own_domains` (or a subdomain) are the shop's own ("noreply@shop.example").
    """
    seen = " ".join(_squash(k) for k in known)
    domains = tuple(d.lower().removeprefix("www.") for d in own_domains if d)
    masked, kinds, last = [], [], 0
    for kind, start, end in find(text):
        if _squash(text[start:end]) in seen:
            continue
        if kind == "email" and _at_domain(text[start:end], domains):
            continue
        masked += [text[last:start], _KINDS[kind]]
        kinds.append(kind)
        last = end
    return "".join(masked) + text[last:], kinds


def _at_domain(email: str, domains: tuple[str, ...]) -> bool:
    host = email.rpartition("@")[2].lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def _squash(text: str) -> str:
    return re.sub(r"[\s().-]", "", text.lower())
