"""One checkpoint for every outgoing reply; each decision is a Verdict."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from generation.safety.text import clean_text


class VerdictAction(enum.StrEnum):
    ALLOW = "allow"
    REWRITE = "rewrite"
    BLOCK = "block"


@dataclass(frozen=True)
class Verdict:
    """What the checkpoint decided about one text and why; `text` is what may be sent."""

    action: VerdictAction
    text: str
    reasons: tuple[str, ...] = ()


def _shorten(text: str, max_chars: int) -> str:
    """Cut at the last sentence or line end that fits, never mid-word."""
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("\n"), cut.rfind("! "), cut.rfind("? "))
    if end > max_chars // 2:
        return cut[: end + 1].rstrip()
    return cut[: cut.rfind(" ")].rstrip() + "…" if " " in cut else cut


def check_reply(text: str, max_chars: int) -> Verdict:
    """Format checks on a reply: invisible characters removed, length within the channel's limit."""
    reasons = []
    cleaned = clean_text(text)
    if cleaned != text.strip():
        reasons.append("removed control or invisible characters")
    if len(cleaned) > max_chars:
        cleaned = _shorten(cleaned, max_chars)
        reasons.append(f"shortened to the {max_chars}-character limit")
    if not cleaned:
        return Verdict(VerdictAction.BLOCK, "", ("empty reply",))
    return Verdict(VerdictAction.REWRITE if reasons else VerdictAction.ALLOW, cleaned, tuple(reasons))
