"""Grounded replies, product descriptions and operator drafts from one generator.

`GroundedWriter` is what the rest of ShopBot calls: it retrieves passages for the conversation,
builds the prompt, generates (batched with whatever else is being generated) and checks the
reply's facts against what the model was shown. A reply with an unsupported fact is never
returned as an answer: the caller gets it flagged and falls back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from generation.corpus import DESCRIPTION_REQUEST, OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES
from generation.generator import StreamingGenerator
from generation.grounding import Fact, check_grounding
from generation.prompt import clean
from generation.retrieval import KnowledgeIndex, Passage

DESCRIPTION_ATTRIBUTES = REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES
OnDraft = Callable[[str], Awaitable[None]]  # receives the reply written so far


@dataclass(frozen=True)
class Written:
    """A generated reply and the evidence for it."""

    text: str
    passages: tuple[Passage, ...]
    unsupported: tuple[Fact, ...]
    quoted: bool = False  # the catalogue's own words, not the generator's

    @property
    def grounded(self) -> bool:
        return bool(self.text) and not self.unsupported


@dataclass(frozen=True)
class Description:
    text: str
    missing: tuple[str, ...]  # attribute names whose value does not appear in the text


class GroundedWriter:
    def __init__(self, generator: StreamingGenerator, index: KnowledgeIndex, products: Sequence[str] = (),
                 passages: int = 3, history_turns: int = 6, description_candidates: int = 4,
                 min_passage_score: float = 0.3, answer_candidates: int = 3) -> None:
        if description_candidates < 1 or answer_candidates < 1:
            raise ValueError(f"need at least one candidate, got {description_candidates} / {answer_candidates}")
        self.generator = generator
        self.index = index
        self._products = tuple(products)
        self._k = passages
        self._history_turns = history_turns
        self._candidates = description_candidates
        self._min_score = min_passage_score
        self._answers = answer_candidates

    async def answer(self, history: Sequence[tuple[str, str]], on_draft: OnDraft | None = None) -> Written:
        """A reply to the conversation (oldest turn first, the shopper's message last), checked.

        `answer_candidates` replies are sampled together and the best is kept (`_best`). When the
        shopper names a product of the catalogue and the generated reply is not grounded
        or is about something else, the catalogue passage closest to the question is quoted instead.

        With `on_draft`, the first candidate is shown while it is written: `on_draft` gets each
        longer prefix whose facts are all supported (none after the first that is not). It is then
        the reply sent whenever it is grounded, so the shopper does not watch one answer and get another.
        """
        prompt, passages, query = await self._prompt(history)
        sources = _sources(passages, history)
        streamed = [self._drafted(prompt, sources, on_draft)] if on_draft is not None else []
        sampled = [self.generator.complete(prompt, sources=sources) for _ in range(self._answers - len(streamed))]
        texts = await asyncio.gather(*streamed, *sampled)
        candidates = [self._checked(t, passages, history) for t in texts]
        watched = on_draft is not None and candidates[0].grounded
        written = candidates[0] if watched else await self._best(candidates, prompt)
        named = [p for p in passages if p.product and p.product.lower() in query.lower()]
        if named and (not written.grounded or named[0].product.lower() not in written.text.lower()):  # type: ignore[union-attr]
            return Written(_quote(named[0]), written.passages, (), quoted=True)
        return written

    async def _drafted(self, prompt: str, sources: list[str], on_draft: OnDraft) -> str:
        """Generate one reply, handing `on_draft` each grown prefix while its facts stay supported."""
        text, shown, drafting = "", "", True
        async for piece in self.generator.stream(prompt, sources=sources):
            text += piece
            draft = text[:max(text.rfind(" "), text.rfind("\n"), 0)].strip()  # whole words only
            if not drafting or not draft or draft == shown:
                continue
            if check_grounding(draft, sources, self._products).unsupported:
                drafting = False  # never show a fact the reply cannot back, nor what follows it
                continue
            shown = draft
            await on_draft(draft)
        return text.strip()

    async def _best(self, candidates: list[Written], prompt: str) -> Written:
        """A grounded candidate before any other; among those, the one the model finds most fluent."""
        if len(candidates) == 1:
            return candidates[0]
        score = self.generator.generator.score
        fluency = await asyncio.to_thread(score, [prompt] * len(candidates), [c.text for c in candidates])
        return candidates[pick_answer([c.grounded for c in candidates], fluency)]

    async def draft(self, history: Sequence[tuple[str, str]]) -> Written:
        """Agent assist: a draft for an operator, who reads it before anything is sent."""
        return await self.answer(history)

    async def describe(self, attributes: Mapping[str, str]) -> Description:
        """A product description that states every given attribute (or reports which it missed).

        Several candidates are sampled together (one batch) and `best_description` picks one.
        """
        given = {k: clean(str(v)) for k, v in attributes.items() if k in DESCRIPTION_ATTRIBUTES and clean(str(v))}
        request = DESCRIPTION_REQUEST + "; ".join(f"{k}: {given[k]}" for k in DESCRIPTION_ATTRIBUTES if k in given)
        prompt = self.generator.generator.prompt([], [("user", request)]).text
        texts = await asyncio.gather(*(self.generator.complete(prompt, sources=[request])
                                       for _ in range(self._candidates)))
        return best_description(texts, request, given, self._products)

    async def _prompt(self, history: Sequence[tuple[str, str]]) -> tuple[str, tuple[Passage, ...], str]:
        """Passages for the shopper's message (and the one before, for a follow-up that names no
        product: "does it run small?"), then the recent turns; small talk that finds no passage is
        shown alone, as the model learnt it."""
        recent = list(history)[-(self._history_turns + 1):]
        asked = [text for role, text in recent if role == "user"][-2:]
        follow_up = len(asked) == 2 and not self.index.named_products(asked[-1]) and _REFERS_BACK.search(asked[-1])
        query = " ".join(asked) if follow_up else asked[-1] if asked else ""
        passages = tuple(await asyncio.to_thread(self.index.search, query, self._k, self._min_score)) if self._k else ()
        prompt = self.generator.generator.prompt([p.text for p in passages], recent if passages else recent[-1:])
        return prompt.text, passages, query

    def _checked(self, text: str, passages: Sequence[Passage], history: Sequence[tuple[str, str]]) -> Written:
        grounding = check_grounding(text, _sources(passages, history), self._products)
        return Written(text, tuple(passages), grounding.unsupported)


def pick_answer(grounded: Sequence[bool], fluency: Sequence[float]) -> int:
    """The candidate to send: a grounded one before any other, then the one the model finds most fluent."""
    return max(range(len(grounded)), key=lambda i: (grounded[i], fluency[i]))


def best_description(texts: Sequence[str], request: str, given: Mapping[str, str],
                     products: Sequence[str] = ()) -> Description:
    """The candidate that states the most `given` values, preferring one with no fact beyond the request.

    (A price or another product's name that the request did not give is invented.) Equal
    candidates: the first.
    """
    def rank(text: str) -> tuple[bool, int]:
        grounded = check_grounding(text, [request], products).grounded
        return grounded, sum(_normalise(v) in _normalise(text) for v in given.values())

    text = max(texts, key=rank)
    return Description(text, tuple(k for k, v in given.items() if _normalise(v) not in _normalise(text)))


_REFERS_BACK = re.compile(r"\b(it|its|this|that|these|those|they|them|one|ones)\b", re.IGNORECASE)


def _quote(passage: Passage) -> str:
    """ "About the Harbor Rain Jacket: features: taped seams..." from a catalogue passage."""
    product = passage.product or ""
    text = passage.text
    for separator in (" - ", ": "):
        if text.startswith(product + separator):
            text = text[len(product) + len(separator):]
            break
    return f"About the {product}: {text}"


def _sources(passages: Sequence[Passage], history: Sequence[tuple[str, str]]) -> list[str]:
    """What a reply's facts may come from: the passages it was shown and the conversation."""
    return [p.text for p in passages] + [t for _, t in history]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())
