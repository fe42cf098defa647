"""Text hygiene: Unicode normalisation, control and invisible characters out."""

from __future__ import annotations

import re
import unicodedata

# Kept although they are format characters: they join emoji sequences and pick emoji styles.
_KEEP = {"\u200d", "\ufe0f", "\ufe0e"}
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t]{2,}")


def _visible(ch: str) -> bool:
    if ch in "\n\t" or ch in _KEEP:
        return True
    # Cc: control characters (NUL, ESC, DEL...); Cf: invisible format characters (zero-width
    # spaces, bidi overrides used to disguise text); Co/Cs: private-use and lone surrogates.
    return unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs")


def clean_text(text: str) -> str:
    """NFC-normalised text without control/invisible characters and runs of blank space."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(ch if _visible(ch) else " " if ch in "\u2028\u2029" else "" for ch in text)
    text = _SPACES.sub(" ", text.replace("\t", " "))
    return _BLANK_LINES.sub("\n\n", text).strip()
