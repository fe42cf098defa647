"""ShopBot's natural-language understanding: intent classification and entity extraction."""

from nlu.parse import Entity, IntentScore, Parse

__all__ = ["Entity", "IntentScore", "Parse"]
