"""The generator's prompt: knowledge passages, then the conversation, then the bot's turn.

    <|knowledge|> passage <|knowledge|> passage <|user|> hi <|bot|> Hello! <|user|> question <|bot|>

The model writes the reply after the last `<|bot|>` and ends it with `<|endoftext|>`. Training
(`generation.train`) and serving build prompts with the same function, so the model never sees a
layout at serving time that it was not trained on. When the prompt is over its token budget, the
oldest turns go first, then the passages that ranked lowest; the shopper's current message always
stays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

KNOWLEDGE = "<|knowledge|>"
USER = "<|user|>"
BOT = "<|bot|>"
END = "<|endoftext|>"
SPECIAL_TOKENS = (END, KNOWLEDGE, USER, BOT)
ROLES = {"user": USER, "bot": BOT, "operator": BOT}  # an operator's words are the shop's words


@dataclass(frozen=True)
class Prompt:
    """The text to feed the model and what made it into that text."""

    text: str
    passages: tuple[str, ...]  # the passages kept, in prompt order
    history: tuple[tuple[str, str], ...]  # the turns kept, oldest first


def build_prompt(
    passages: Sequence[str],
    history: Sequence[tuple[str, str]],
    count_tokens: Callable[[str], int] | None = None,
    budget: int = 0,
) -> Prompt:
    """The prompt for `history` (oldest first, the shopper's message last) grounded on `passages`.

    `passages` come best first (retrieval order); they are written in that order. With
    `count_tokens` and `budget` > 0 the prompt is cut to at most `budget` tokens, dropping
    the oldest turns and then the last passages; the current message is never dropped.
    """
    if not history or history[-1][0] != "user":
        raise ValueError("the conversation must end with the shopper's message")
    kept_passages = [clean(p) for p in passages if clean(p)]
    kept_history = [(role, clean(text)) for role, text in history]
    prompt = _render(kept_passages, kept_history)
    if count_tokens is None or budget <= 0:
        return prompt
    while count_tokens(prompt.text) > budget and len(kept_history) > 1:
        kept_history.pop(0)
        prompt = _render(kept_passages, kept_history)
    while count_tokens(prompt.text) > budget and kept_passages:
        kept_passages.pop()
        prompt = _render(kept_passages, kept_history)
    return prompt


def training_text(passages: Sequence[str], history: Sequence[tuple[str, str]], reply: str) -> tuple[str, str]:
    """(prompt, completion) of one training example: the model learns to write the completion."""
    return build_prompt(passages, history).text, f" {clean(reply)}{END}"


def clean(text: str) -> str:
    """One line of plain text: the markers are the model's structure, so nobody else may write them."""
    for marker in SPECIAL_TOKENS:
        text = text.replace(marker, " ")
    return " ".join(text.split())


def _render(passages: Sequence[str], history: Sequence[tuple[str, str]]) -> Prompt:
    parts = [f"{KNOWLEDGE} {p}" for p in passages]
    parts += [f"{ROLES.get(role, USER)} {text}" for role, text in history]
    parts.append(BOT)
    return Prompt(" ".join(parts), tuple(passages), tuple(history))
