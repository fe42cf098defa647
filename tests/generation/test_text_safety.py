"""Text hygiene, reply format checks and PII redaction."""

from __future__ import annotations

import pytest

from generation.safety import SafetyFilter, SafetyPolicy, VerdictAction, clean_text
from generation.safety.pii import luhn_valid, redact


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("hello", "hello"),
        ("he\x00llo\x1b", "hello"),
        ("zero\u200bwidth", "zerowidth"),
        ("evil \u202etxt.exe", "evil txt.exe"),
        ("  spaced   out \t text ", "spaced out text"),
        ("a\r\nb\n\n\n\nc", "a\nb\n\nc"),
        ("family 👩\u200d👩\u200d👧 ok", "family 👩\u200d👩\u200d👧 ok"),
        ("cafe\u0301", "café"),
        ("\u200b\u200b", ""),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def check_reply(text: str, max_chars: int):  # type: ignore[no-untyped-def]
    return SafetyFilter(SafetyPolicy(max_chars=max_chars)).check_output(text)


def test_reply_over_the_limit_is_cut_at_a_sentence() -> None:
    verdict = check_reply("Your parcel left our warehouse today. Then " + "more words " * 20, 60)
    assert verdict.action is VerdictAction.REWRITE and verdict.text == "Your parcel left our warehouse today."
    assert check_reply("word " * 30, 42).text.endswith("word…")


def test_clean_reply_is_allowed_and_empty_is_blocked() -> None:
    assert check_reply("Your order shipped.", 100).action is VerdictAction.ALLOW
    assert check_reply("\u200b", 100).action is VerdictAction.BLOCK


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("mail me at anna.k@example.com", "mail me at [email]"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27"),
        ("card 4111-1111-1111-1112", "card 4111-1111-1111-1112"),  # fails Luhn: not a card
        ("call +49 30 5550 1234 pls", "call [phone] pls"),
        ("IBAN DE89 3704 0044 0532 0130 00", "IBAN [iban]"),
        ("order 10023, tracking JJD0001234567", "order 10023, tracking JJD0001234567"),
        ("Kastanienallee 12, 10435 Berlin", "Kastanienallee 12, 10435 Berlin"),
    ],
)
def test_redact(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
