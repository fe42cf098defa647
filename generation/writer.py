"""Grounded replies, product descriptions and operator drafts from one generator.

`GroundedWriter` is what the rest of ShopBot calls: it retrieves passages for the conversation,
builds the prompt, generates (batched with whatever else is being generated) and checks the
reply's facts against what the model was shown. A reply with an unsupported fact is never
returned as an answer: the caller gets it flagged and falls back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from generation.corpus import DESCRIPTION_REQUEST, OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES
from generation.generator import StreamingGenerator
from generation.grounding import Fact, check_grounding
from generation.prompt import clean
from generation.retrieval import KnowledgeIndex, Passage

DESCRIPTION_ATTRIBUTES = REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES


@dataclass(frozen=True)
class Written:
    """A generated reply and the evidence for it."""

    text: str
    passages: tuple[Passage, ...]
    unsupported: tuple[Fact, ...]

    @property
    def grounded(self) -> bool:
        return bool(self.text) and not self.unsupported


@dataclass(frozen=True)
class Description:
    text: str
    missing: tuple[str, ...]  # attribute names whose value does not appear in the text


class GroundedWriter:
    def __init__(self, generator: StreamingGenerator, index: KnowledgeIndex, products: Sequence[str] = (),
                 passages: int = 3, history_turns: int = 6) -> None:
        self.generator = generator
        self.index = index
        self._products = tuple(products)
        self._k = passages
        self._history_turns = history_turns

    async def answer(self, history: Sequence[tuple[str, str]]) -> Written:
        """A reply to the conversation (oldest turn first, the shopper's message last), checked."""
        prompt, passages = await self._prompt(history)
        text = await self.generator.complete(prompt)
        return self._checked(text, passages, history)

    async def draft(self, history: Sequence[tuple[str, str]]) -> Written:
        """Agent assist: a draft for an operator, who reads it before anything is sent."""
        return await self.answer(history)

    async def describe(self, attributes: Mapping[str, str]) -> Description:
        """A product description that states every given attribute (or reports which it missed)."""
        given = {k: clean(str(v)) for k, v in attributes.items() if k in DESCRIPTION_ATTRIBUTES and clean(str(v))}
        request = DESCRIPTION_REQUEST + "; ".join(f"{k}: {given[k]}" for k in DESCRIPTION_ATTRIBUTES if k in given)
        prompt = self.generator.generator.prompt([], [("user", request)]).text
        text = await self.generator.complete(prompt)
        missing = tuple(k for k, v in given.items() if _normalise(v) not in _normalise(text))
        return Description(text, missing)

    async def _prompt(self, history: Sequence[tuple[str, str]]) -> tuple[str, tuple[Passage, ...]]:
        recent = list(history)[-(self._history_turns + 1):]
        query = " ".join(text for role, text in recent[-3:] if role == "user")
        passages = tuple(await asyncio.to_thread(self.index.search, query, self._k)) if self._k else ()
        prompt = self.generator.generator.prompt([p.text for p in passages], recent)
        return prompt.text, passages

    def _checked(self, text: str, passages: Sequence[Passage], history: Sequence[tuple[str, str]]) -> Written:
        sources = [p.text for p in passages] + [t for _, t in history]
        grounding = check_grounding(text, sources, self._products)
        return Written(text, tuple(passages), grounding.unsupported)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())
