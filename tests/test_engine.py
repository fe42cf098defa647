"""The engine around the models: the learning loop (unsure messages kept, redacted, exported) and crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from bot.actions.demo_orders import SqliteOrderStore, create_demo_store
from bot.actions.knowledge import ShopKnowledge
from bot.actions.registry import build_executor
from bot.actions.runner import LocalActionRunner
from bot.engine import Engine, EngineConfig
from bot.state import FileReviewLog, MemoryStore
from bot.types import InboundMessage
from nlu.dataset import load_examples
from nlu.parse import IntentScore, Parse
from tests.conftest import ROOT

DATA = ROOT / "data"


class ScriptedParser:
    """A fake classifier: each text gets the ranking written for it."""

    def __init__(self, verdicts: dict[str, tuple[tuple[str, float], ...]], out_of_scope: set[str]) -> None:
        self.verdicts = verdicts
        self.out_of_scope = out_of_scope

    async def parse(self, text: str) -> Parse:
        ranking = tuple(IntentScore(n, c) for n, c in self.verdicts[text])
        return Parse(text, ranking[0], ranking, (), text in self.out_of_scope)


def engine(tmp_path: Path, parser: ScriptedParser) -> Engine:
    knowledge = ShopKnowledge.load(DATA / "shop.yml", DATA / "faq.yml", DATA / "responses.yml")
    create_demo_store(tmp_path / "o.sqlite", DATA / "demo_orders.yml", knowledge.facts["delivery_options"],
                      date.today())
    runner = LocalActionRunner(build_executor(knowledge, SqliteOrderStore(tmp_path / "o.sqlite", [])))
    return Engine(MemoryStore(ttl_s=60), parser, runner, knowledge, EngineConfig(),
                  FileReviewLog(tmp_path / "review.jsonl", 100))


async def test_unsure_messages_are_kept_redacted_and_exported(tmp_path: Path) -> None:
    parser = ScriptedParser(
        {
            "hmm the thing with my stuff, mail me at jo@example.com": (("complaint", 0.31), ("review", 0.2)),
            "what's the weather in Rome": (("delivery_period", 0.9), ("greet", 0.05)),
            "invoice thing": (("get_invoice", 0.52), ("check_invoice", 0.45)),
            "where is order 10023": (("track_order", 0.97), ("track_refund", 0.01)),
            "call me on +49 30 5550 1234, I want a person": (("contact_human_agent", 0.95), ("greet", 0.01)),
        },
        out_of_scope={"what's the weather in Rome"},
    )
    bot = engine(tmp_path, parser)
    for text in parser.verdicts:
        assert await bot.handle(InboundMessage("rest", "c1", text))
    kept = await FileReviewLog(tmp_path / "review.jsonl", 100).items(100)
    assert [i.reason for i in kept] == ["fallback", "out_of_scope", "ambiguous", "handoff"]
    assert "jo@example.com" not in kept[0].text and "[email]" in kept[0].text
    assert "[phone]" in kept[3].text

    out = tmp_path / "to_label.yml"
    env = {**os.environ, "SHOPBOT_ROOT": str(ROOT), "SHOPBOT_NLU__REVIEW_FILE": str(tmp_path / "review.jsonl")}
    result = subprocess.run([sys.executable, "-m", "bot", "--config", str(ROOT / "config.yml"), "nlu", "review",
                             "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "4 message(s) exported" in result.stdout
    examples = load_examples(out)  # valid Rasa NLU YAML, readable by our own trainer
    assert {e.intent for e in examples} == {"complaint", "out_of_scope", "get_invoice", "contact_human_agent"}
    assert yaml.safe_load(out.read_text())["version"] == "3.1"


async def test_an_action_that_crashes_costs_one_apology_not_the_conversation(tmp_path: Path) -> None:
    class BrokenOrders:
        async def get(self, order_id: str) -> None:
            raise RuntimeError("order backend exploded")

    knowledge = ShopKnowledge.load(DATA / "shop.yml", DATA / "faq.yml", DATA / "responses.yml")
    parser = ScriptedParser({"where is 10023": (("track_order", 0.97),), "hello": (("greet", 0.97),)}, set())
    store = MemoryStore(ttl_s=60)
    bot = Engine(store, _WithOrder(parser), LocalActionRunner(build_executor(knowledge, BrokenOrders())),  # type: ignore[arg-type]
                 knowledge, EngineConfig())
    replies = await bot.handle(InboundMessage("rest", "c2", "where is 10023"))
    assert "something went wrong on my side" in replies[0].text
    assert "Hi" in (await bot.handle(InboundMessage("rest", "c2", "hello")))[0].text
    kinds = [e.kind for e in await store.events("c2")]
    assert "error" in kinds


class _WithOrder:
    """Adds the order number entity the real classifier would find."""

    def __init__(self, parser: ScriptedParser) -> None:
        self.parser = parser

    async def parse(self, text: str) -> Parse:
        from nlu.entities import extract_entities

        found = await self.parser.parse(text)
        return Parse(text, found.intent, found.ranking, extract_entities(text), found.out_of_scope)


async def test_feedback_is_kept_with_the_route_of_the_reply_it_rates(tmp_path: Path) -> None:
    bot = engine(tmp_path, ScriptedParser({"where is order 10023": (("track_order", 0.97), ("greet", 0.01))}, set()))
    replies = await bot.handle(InboundMessage("rest", "fb1", "where is order 10023"))
    assert replies and all(r.id for r in replies) and len({r.id for r in replies}) == len(replies)
    assert await bot.feedback("fb1", replies[0].id, "down")
    assert not await bot.feedback("fb1", "made-up-id", "up"), "an unknown reply is not rated"
    assert not await bot.feedback("nobody", replies[0].id, "up"), "nor a reply of another conversation"
    events = [e for e in await bot.store.events("fb1") if e.kind == "feedback"]
    assert [(e.data["reply"], e.data["value"], e.data["route"]) for e in events] == [(replies[0].id, "down", "action")]
    with pytest.raises(ValueError):
        await bot.feedback("fb1", replies[0].id, "sideways")
