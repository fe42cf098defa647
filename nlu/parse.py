"""What the intent classifier says about one message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(frozen=True)
class Entity:
    """A value found in the text; `start`/`end` index into the text the parser saw."""

    entity: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Parse:
    """The classifier's verdict: top intent, the ranking behind it, entities, out-of-scope flag."""

    text: str
    intent: IntentScore
    ranking: tuple[IntentScore, ...] = ()
    entities: tuple[Entity, ...] = ()
    out_of_scope: bool = False
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def score_of(self, intent: str) -> float:
        """The confidence given to `intent`; 0 when it is not in the ranking (Rasa keeps the top 10)."""
        return next((s.confidence for s in self.ranking if s.name == intent), 0.0)

    def entity(self, name: str) -> str | None:
        """The first value found for entity `name`, if any."""
        return next((e.value for e in self.entities if e.entity == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "intent": {"name": self.intent.name, "confidence": round(self.intent.confidence, 4)},
            "intent_ranking": [
                {"name": s.name, "confidence": round(s.confidence, 4)} for s in self.ranking
            ],
            "entities": [e.__dict__ for e in self.entities],
            "out_of_scope": self.out_of_scope,
        }
