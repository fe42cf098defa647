"""The generator route end to end: writer checks, descriptions, and what the engine sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from bot.actions.demo_orders import SqliteOrderStore, create_demo_store
from bot.actions.knowledge import ShopKnowledge
from bot.actions.registry import build_executor
from bot.actions.runner import LocalActionRunner
from bot.engine import Engine, EngineConfig
from bot.router import RoutingPolicy
from bot.state import MemoryStore
from bot.types import InboundMessage, ReplyKind
from generation.generator import Generator
from generation.retrieval import KnowledgeIndex
from generation.writer import GroundedWriter, best_description
from nlu.parse import IntentScore, Parse
from tests.conftest import ROOT


class ScriptedGenerator:
    """The streaming generator's interface with a written reply: tests of what happens around it."""

    def __init__(self, generator: Generator, reply: str | list[str] | Exception) -> None:
        self.generator = generator
        self.reply = reply
        self.prompts: list[str] = []
        self.sources: list[object] = []
        self.word_delay = 0.0  # seconds between streamed words

    async def complete(self, prompt: str, settings: object = None, sources: object = None) -> str:
        self.prompts.append(prompt)
        self.sources.append(sources)
        if isinstance(self.reply, Exception):
            raise self.reply
        if isinstance(self.reply, list):  # one reply per call, in turn
            return self.reply[(len(self.prompts) - 1) % len(self.reply)]
        return self.reply

    async def stream(self, prompt: str, settings: object = None, sources: object = None) -> AsyncIterator[str]:
        """The reply word by word, each word with its leading space as GPT-2's tokens come."""
        reply = await self.complete(prompt, settings, sources)
        for i, word in enumerate(reply.split(" ")):
            await asyncio.sleep(self.word_delay)
            yield word if i == 0 else " " + word

    async def aclose(self) -> None:
        return None


def writer(tiny_dir: Path, index: KnowledgeIndex, reply: str | list[str] | Exception) -> GroundedWriter:
    return GroundedWriter(ScriptedGenerator(Generator.load(tiny_dir), reply), index,  # type: ignore[arg-type]
                          ["Harbor Rain Jacket", "Aurora Merino Sweater"])


async def test_the_prompt_holds_the_retrieved_passages_and_the_conversation(tiny_dir: Path, index) -> None:  # type: ignore[no-untyped-def]
    w = writer(tiny_dir, index, "It is made of recycled polyester.")

    written = await w.answer([("user", "hi"), ("bot", "Hello!"), ("user", "what is the harbor rain jacket made of")])

    prompt = w.generator.prompts[0]  # type: ignore[attr-defined]
    assert "Harbor Rain Jacket - material: recycled polyester." in prompt
    assert prompt.endswith("<|user|> what is the harbor rain jacket made of <|bot|>")
    assert written.grounded and written.passages[0].product == "Harbor Rain Jacket"
    # decoding may only write numbers from what the model was shown: the passages and the turns
    turns = ["hi", "Hello!", "what is the harbor rain jacket made of"]
    assert w.generator.sources[0] == [p.text for p in written.passages] + turns  # type: ignore[attr-defined]


async def test_an_invented_price_is_not_grounded(tiny_dir: Path, index) -> None:  # type: ignore[no-untyped-def]
    w = writer(tiny_dir, index, "The jacket is €59.00 today only.")

    written = await w.answer([("user", "price of the jacket?")])

    assert not written.grounded and [f.text for f in written.unsupported] == ["€59.00"]


async def test_a_description_reports_the_attributes_it_left_out(tiny_dir: Path, index) -> None:  # type: ignore[no-untyped-def]
    w = writer(tiny_dir, index, "The Fjord Parka is a warm coat in navy.")

    description = await w.describe({"name": "Fjord Parka", "category": "Jackets", "colours": "navy",
                                     "material": "recycled down", "ignored": "x"})

    assert description.missing == ("category", "material")
    request = w.generator.prompts[0]  # type: ignore[attr-defined]
    assert "Write a product description for: name: Fjord Parka; category: Jackets; material: recycled down; " \
           "colours: navy" in request and "ignored" not in request


def test_the_description_stating_most_attributes_and_no_invented_fact_wins() -> None:
    request = "Write a product description for: name: Fjord Parka; colours: navy; material: recycled down"
    given = {"name": "Fjord Parka", "colours": "navy", "material": "recycled down"}
    candidates = ["A warm parka.", "The Fjord Parka in navy, only €99!", "The Fjord Parka comes in navy.",
                  "The Fjord Parka in navy, recycled down inside, €99."]

    best = best_description(candidates, request, given, ["Fjord Parka"])

    assert best.text == "The Fjord Parka comes in navy." and best.missing == ("material",)
    assert best_description(candidates[:2], request, given).text == "A warm parka."  # fewer facts, none invented


def engine(tmp_path: Path, w: GroundedWriter, out_of_scope: bool = True) -> Engine:
    data = ROOT / "data"
    knowledge = ShopKnowledge.load(data / "shop.yml", data / "faq.yml", data / "responses.yml")
    create_demo_store(tmp_path / "o.sqlite", data / "demo_orders.yml", knowledge.facts["delivery_options"],
                      date.today())
    runner = LocalActionRunner(build_executor(knowledge, SqliteOrderStore(tmp_path / "o.sqlite", [])))

    class OutOfScope:
        async def parse(self, text: str) -> Parse:
            top = IntentScore("out_of_scope", 0.9)
            return Parse(text, top, (top, IntentScore("track_order", 0.05)), (), out_of_scope)

    return Engine(MemoryStore(ttl_s=60), OutOfScope(), runner, knowledge,
                  EngineConfig(policy=RoutingPolicy(generator=True)), writer=w)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("The Harbor Rain Jacket is made of recycled polyester.", ReplyKind.GENERATOR),
        ("Your order 10099 arrives on Friday for €12.00.", ReplyKind.FALLBACK),  # invented order facts
        (RuntimeError("model exploded"), ReplyKind.FALLBACK),
        ("", ReplyKind.FALLBACK),
    ],
)
async def test_the_engine_sends_only_grounded_generated_replies(
    tmp_path: Path, tiny_dir: Path, index, reply: str | Exception, kind: ReplyKind  # type: ignore[no-untyped-def]
) -> None:
    bot = engine(tmp_path, writer(tiny_dir, index, reply))

    # No product named: nothing to quote from the catalogue, so an unbacked reply becomes the fallback.
    replies = await bot.handle(InboundMessage("rest", "c1", "what are your rain jackets made of"))

    assert [r.kind for r in replies] == [kind]
    if kind is ReplyKind.FALLBACK and isinstance(reply, str) and reply:
        assert "10099" not in replies[0].text
        events = [e for e in await bot.store.events("c1") if e.kind == "generation"]
        assert events and events[0].data["grounded"] is False and "order_id: 10099" in events[0].data["unsupported"]


async def test_a_named_product_gets_the_catalogue_s_words_when_the_reply_is_not_about_it(
    tiny_dir: Path, index  # type: ignore[no-untyped-def]
) -> None:
    off_topic = writer(tiny_dir, index, "The Tidewater Rain Jacket is made of wool.")  # a name the model made up

    written = await off_topic.answer([("user", "what is the Harbor Rain Jacket made of?")])

    assert written.quoted and written.grounded
    assert written.text.startswith("About the Harbor Rain Jacket: ") and "recycled polyester" in written.text
    on_topic = writer(tiny_dir, index, "The Harbor Rain Jacket is made of recycled polyester.")
    kept = await on_topic.answer([("user", "what is the Harbor Rain Jacket made of?")])
    assert not kept.quoted and kept.text == "The Harbor Rain Jacket is made of recycled polyester."


def test_small_talk_gets_no_passages(index: KnowledgeIndex) -> None:
    assert index.search("what is the harbor rain jacket made of", 3, min_score=0.3)
    assert index.search("tell me a joke", 3, min_score=0.3) == []


async def test_a_grounded_candidate_wins_over_an_ungrounded_one(tiny_dir: Path, index) -> None:  # type: ignore[no-untyped-def]
    w = writer(tiny_dir, index, ["It is €12.00 today.", "Returns are free for 30 days.", "It costs €99.00."])

    written = await w.answer([("user", "can I send things back?")])

    assert written.text == "Returns are free for 30 days." and written.grounded
    assert len(w.generator.prompts) == 3  # type: ignore[attr-defined]  # three candidates, one batch


async def test_a_follow_up_about_it_is_answered_about_the_product_before(tiny_dir: Path, index) -> None:  # type: ignore[no-untyped-def]
    w = writer(tiny_dir, index, "In black and a detachable hood.")

    written = await w.answer([("user", "what is the Harbor Rain Jacket made of?"), ("bot", "Recycled polyester."),
                              ("user", "is it waterproof?")])

    assert written.quoted and written.text.startswith("About the Harbor Rain Jacket: ")


async def test_small_talk_is_shown_to_the_model_alone(tiny_dir: Path, index) -> None:  # type: ignore[no-untyped-def]
    w = writer(tiny_dir, index, "Why are jeans so reliable? They never let you down!")

    await w.answer([("user", "what is the Harbor Rain Jacket made of?"), ("bot", "Recycled polyester."),
                    ("user", "tell me a joke")])

    assert w.generator.prompts[0] == "<|user|> tell me a joke <|bot|>"  # type: ignore[attr-defined]
