"""Button payloads in Rasa's form, `/intent` or `/intent{"entity": "value"}`, read without the model."""

from __future__ import annotations

import json
import re
from collections.abc import Collection

from nlu.parse import Entity, IntentScore, Parse

_PAYLOAD = re.compile(r"^/(?P<intent>[a-z_][a-z0-9_]*)(?P<entities>\{.*\})?$", re.DOTALL)


def parse_payload(text: str, intents: Collection[str]) -> Parse | None:
    """A certain Parse for a button payload naming a known intent; None for anything else."""
    match = _PAYLOAD.match(text.strip())
    if match is None or match["intent"] not in intents:
        return None
    entities: list[Entity] = []
    if match["entities"]:
        try:
            values = json.loads(match["entities"])
        except json.JSONDecodeError:
            return None
        if not isinstance(values, dict):
            return None
        entities = [Entity(str(k), str(v), 0, 0) for k, v in values.items() if isinstance(v, (str, int))]
    score = IntentScore(match["intent"], 1.0)
    return Parse(text=text, intent=score, ranking=(score,), entities=tuple(entities))
