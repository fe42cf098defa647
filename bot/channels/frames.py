"""The widget's frames that more than one sender writes."""

from __future__ import annotations

from typing import Any

from bot.types import Reply


def reply_frame(reply: Reply, route: str) -> dict[str, Any]:
    """A final answer for the widget: from the bot (its route) or from an operator (route "operator")."""
    shown = reply.to_json()
    return {"type": "reply", "reply_id": reply.id, "text": reply.text, "kind": reply.kind.value, "route": route,
            "buttons": shown["buttons"]}
