"""One checkpoint for every outgoing reply and one guard for every incoming message; each
decision is a Verdict.

Replies (`SafetyFilter.check_output`): harmful language (the classifier), leaked prompt text and
promises outside policy are blocked; someone else's personal data is masked, links outside the
allowlist removed, invisible characters dropped and the length cut to the channel's limit
(rewrites). Messages (`check_input`): abuse, threats, self-harm and prompt injections are flagged,
so the engine answers them itself (calmly, or by handing over) instead of processing them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from generation.safety import rules
from generation.safety.pii import mask_foreign
from generation.safety.text import clean_text


class VerdictAction(enum.StrEnum):
    ALLOW = "allow"
    REWRITE = "rewrite"
    BLOCK = "block"


@dataclass(frozen=True)
class Verdict:
    """What the checkpoint decided about one text and why; `text` is what may be sent.

    `categories` maps each category found to its score (1.0 for a rule that matched).
    """

    action: VerdictAction
    text: str
    reasons: tuple[str, ...] = ()
    categories: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return bool(self.categories)

    def to_json(self) -> dict[str, object]:
        return {"action": self.action.value, "categories": dict(self.categories), "text": self.text,
                "reasons": list(self.reasons)}


class HarmScorer(Protocol):
    threshold: float  # the total harm score at which a reply is harmful
    input_threshold: float  # ... and a shopper's message

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]: ...


#: categories the input guard answers by handing the conversation to a person
HANDOFF_CATEGORIES = frozenset({"violence", "self_harm"})


@dataclass(frozen=True)
class SafetyPolicy:
    max_chars: int = 4_000  # the channel's limit for one reply
    threshold: float = 0.0  # total harm score that blocks a reply; 0: the classifier's calibrated threshold
    input_threshold: float = 0.0  # ... that flags a shopper's message; 0: the calibrated one
    allowed_hosts: tuple[str, ...] = ()  # links to other hosts are removed; emails at these are the shop's
    public_contacts: tuple[str, ...] = ()  # the shop's own email, phone, address: never masked


class SafetyFilter:
    def __init__(self, policy: SafetyPolicy = SafetyPolicy(), harm: HarmScorer | None = None) -> None:
        self.policy = policy
        self.harm = harm  # without a trained classifier only the rule checks run

    def check_output(self, text: str, known: Iterable[str] = (), authored: bool = False) -> Verdict:
        """The verdict on a reply; `known` holds the shopper's own texts and details (theirs to see).

        `authored`: the shop's own wording (its FAQ and dialogue templates) states its policy, so it
        is not checked for promises outside the policy; everything else still applies.
        """
        cleaned = clean_text(text)
        if not cleaned:
            return Verdict(VerdictAction.BLOCK, "", ("empty reply",))
        calibrated = self.harm.threshold if self.harm is not None else 0.0
        categories, reasons = self._harm(cleaned, self.policy.threshold or calibrated)
        checks = [("leak", rules.leak(cleaned))] + ([] if authored else [("promise", rules.promise(cleaned))])
        for category, found in checks:
            if found:
                categories[category] = 1.0
                reasons += found
        if categories:
            return Verdict(VerdictAction.BLOCK, "", tuple(reasons), categories)
        rewrites = ["removed control or invisible characters"] if cleaned != text.strip() else []
        cleaned, masked = mask_foreign(cleaned, [*known, *self.policy.public_contacts], self.policy.allowed_hosts)
        if masked:
            categories["pii"] = 1.0
            rewrites.append("masked personal data: " + ", ".join(sorted(set(masked))))
        links = rules.foreign_links(cleaned, self.policy.allowed_hosts)
        if links:
            categories["link"] = 1.0
            cleaned = re.sub("|".join(re.escape(u) for u in sorted(links, key=len, reverse=True)), "[link removed]",
                             cleaned)
            rewrites.append("removed links outside the allowlist")
        if len(cleaned) > self.policy.max_chars:
            cleaned = _shorten(cleaned, self.policy.max_chars)
            rewrites.append(f"shortened to the {self.policy.max_chars}-character limit")
        action = VerdictAction.REWRITE if rewrites else VerdictAction.ALLOW
        return Verdict(action, cleaned, tuple(rewrites), categories)

    def check_input(self, text: str) -> Verdict:
        """The verdict on a shopper's message: BLOCK means the engine answers it itself."""
        cleaned = clean_text(text)
        calibrated = self.harm.input_threshold if self.harm is not None else 0.0
        categories, reasons = self._harm(cleaned, self.policy.input_threshold or calibrated)
        found = rules.injection(cleaned)
        if found:
            categories["injection"] = 1.0
            reasons += found
        action = VerdictAction.BLOCK if categories else VerdictAction.ALLOW
        return Verdict(action, cleaned, tuple(reasons), categories)

    def _harm(self, text: str, threshold: float) -> tuple[dict[str, float], list[str]]:
        """The likeliest harmful category with the total harm score, when that reaches `threshold`."""
        if self.harm is None:
            return {}, []
        scores = self.harm.scores([text])[0]
        total = sum(scores.values())
        if total < threshold:
            return {}, []
        category = max(scores, key=scores.__getitem__)
        return {category: round(total, 3)}, [f"{category} ({total:.2f})"]


def _shorten(text: str, max_chars: int) -> str:
    """Cut at the last sentence or line end that fits, never mid-word."""
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("\n"), cut.rfind("! "), cut.rfind("? "))
    if end > max_chars // 2:
        return cut[: end + 1].rstrip()
    return cut[: cut.rfind(" ")].rstrip() + "…" if " " in cut else cut
