"""Long replies cut for Telegram: in order, nothing lost, on the coarsest boundary that fits."""

from __future__ import annotations

import pytest

from bot.channels.splitting import split_message, utf16_length


def _words(parts: list[str]) -> list[str]:
    return " ".join(parts).split()


def test_a_short_text_stays_whole() -> None:
    assert split_message("  Your order 10023 has shipped.  ", 4096) == ["Your order 10023 has shipped."]
    assert split_message("   ", 4096) == []


def test_paragraphs_are_kept_together_when_they_fit() -> None:
    first, second = "First paragraph. " * 100, "Second paragraph. " * 100
    parts = split_message(f"{first}\n\n{second}", 2_500)
    assert parts == [first.strip(), second.strip()]


def test_a_long_paragraph_is_cut_after_a_sentence() -> None:
    text = " ".join(f"Sentence number {i} ends here." for i in range(400))
    parts = split_message(text, 1_000)
    assert all(utf16_length(p) <= 1_000 for p in parts)
    assert all(p.endswith(".") for p in parts), "every part ends a sentence"
    assert _words(parts) == text.split()


def test_ten_thousand_characters_fit_telegram_in_order_and_nothing_is_lost() -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 180 for i in range(11))
    assert len(text) > 10_000
    parts = split_message(text, 4096)
    assert len(parts) == 3
    assert all(0 < utf16_length(p) <= 4096 for p in parts)
    assert _words(parts) == text.split()


def test_a_word_longer_than_the_limit_is_cut_inside_but_never_inside_a_character() -> None:
    assert split_message("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    emoji = "😀" * 5  # two UTF-16 units each, as Telegram counts
    parts = split_message(emoji, 5)
    assert parts == ["😀😀", "😀😀", "😀"]
    assert "".join(parts) == emoji


def test_a_limit_too_small_for_any_character_is_refused() -> None:
    with pytest.raises(ValueError):
        split_message("abc", 1)
