"""The generator corpus: templates load, and every built sample teaches copying, not inventing."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from generation.corpus import (
    DESCRIPTION_REQUEST,
    Sample,
    TemplateError,
    Templates,
    build_corpus,
    load_templates,
    split,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "data" / "generator"


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(TEMPLATES)


@pytest.fixture(scope="module")
def corpus(templates: Templates) -> list[Sample]:
    return build_corpus(templates, 4000, seed=7)


def of_kind(samples: list[Sample], kind: str) -> list[Sample]:
    return [s for s in samples if s.kind == kind]


def identity(sample: Sample) -> tuple[object, ...]:
    return sample.kind, sample.passages, sample.history, sample.reply


def test_templates_load_with_enough_families_and_values(templates: Templates) -> None:
    counts = {kind: len(families) for kind, families in templates.families.items()}
    assert counts["grounded"] >= 45 and counts["no_answer"] >= 12 and counts["chitchat"] >= 25, counts
    assert len(templates.descriptions) >= 12
    minimum = {"product": 150, "material": 40, "colour": 40, "feature": 60, "care": 20, "country": 25}
    sizes = {name: len(templates.pools[name].values) for name in minimum}
    assert all(sizes[name] >= n for name, n in minimum.items()), sizes
    for family in templates.families["grounded"]:
        assert 3 <= len(family.questions) <= 8 and 2 <= len(family.replies) <= 5, family.name


def test_no_pool_product_is_a_catalogue_product(templates: Templates) -> None:
    catalogue = yaml.safe_load((ROOT / "data" / "catalog.yml").read_text(encoding="utf-8"))["products"]
    assert {p["name"] for p in catalogue}.isdisjoint(templates.pools["product"].values)


def test_a_product_keeps_its_category(templates: Templates) -> None:
    pool = templates.pools["product"]
    for sample in of_kind(build_corpus(templates, 300, seed=3, mix={"description": 1}), "description"):
        assert pool.group_of[sample.attributes["name"]] == sample.attributes["category"]


def test_build_is_deterministic_per_seed(templates: Templates) -> None:
    assert build_corpus(templates, 200, seed=1) == build_corpus(templates, 200, seed=1)
    assert build_corpus(templates, 200, seed=1) != build_corpus(templates, 200, seed=2)


def test_kinds_follow_the_mix(corpus: list[Sample], templates: Templates) -> None:
    shares = {kind: n / len(corpus) for kind, n in Counter(s.kind for s in corpus).items()}
    expected = {"grounded": 0.6, "no_answer": 0.1, "chitchat": 0.15, "description": 0.15}
    assert shares.keys() == expected.keys()
    assert all(abs(shares[kind] - share) < 0.03 for kind, share in expected.items()), shares
    only_chitchat = build_corpus(templates, 50, seed=1, mix={"chitchat": 1.0})
    assert {s.kind for s in only_chitchat} == {"chitchat"}


def test_every_grounded_fact_is_copied_from_what_the_model_is_shown(corpus: list[Sample]) -> None:
    grounded = of_kind(corpus, "grounded")
    assert grounded
    for sample in grounded:
        shown = "\n".join([*sample.passages, *(text for _, text in sample.history)])
        assert sample.facts, sample
        for fact in sample.facts:
            assert fact in sample.reply and fact in shown, (fact, sample)


def test_relevant_passage_is_not_always_first(corpus: list[Sample]) -> None:
    grounded = [s for s in of_kind(corpus, "grounded") if len(s.passages) > 1]
    first = [all(f in s.passages[0] for f in s.facts if f not in s.history[-1][1]) for s in grounded]
    assert 0.15 < sum(first) / len(first) < 0.7
    assert all(1 <= len(s.passages) <= 8 for s in of_kind(corpus, "grounded") + of_kind(corpus, "no_answer"))


def test_distractors_never_describe_the_same_product_or_country(corpus: list[Sample], templates: Templates) -> None:
    keys = [*templates.pools["product"].values, *templates.pools["country"].values, *templates.pools["city"].values]
    mention = re.compile("|".join(rf"\b{re.escape(key)}\b" for key in sorted(keys, key=len, reverse=True)))
    for sample in of_kind(corpus, "grounded") + of_kind(corpus, "no_answer"):
        mentions = Counter(key for passage in sample.passages for key in set(mention.findall(passage)))
        assert max(mentions.values(), default=1) == 1, sample


def test_no_answer_and_chitchat_replies_state_no_values(corpus: list[Sample], templates: Templates) -> None:
    products = templates.pools["product"].values
    replies = [s.reply for s in corpus if s.kind in ("no_answer", "chitchat")]
    assert len(replies) > 500
    for reply in replies:
        assert not re.search(r"\d", reply), reply
        assert not any(product in reply for product in products), reply
    assert all(not s.passages and not s.facts for s in of_kind(corpus, "chitchat"))
    assert all(s.passages and not s.facts for s in of_kind(corpus, "no_answer"))


def test_every_description_mentions_every_given_attribute(corpus: list[Sample]) -> None:
    descriptions = of_kind(corpus, "description")
    assert any(len(s.attributes) == 8 for s in descriptions) and any(len(s.attributes) < 6 for s in descriptions)
    for sample in descriptions:
        (role, request), = sample.history
        assert role == "user" and request.startswith(DESCRIPTION_REQUEST) and not sample.passages
        assert request.removeprefix(DESCRIPTION_REQUEST) == "; ".join(f"{k}: {v}" for k, v in sample.attributes.items())
        assert list(sample.attributes)[:2] == ["name", "category"]
        for value in sample.attributes.values():
            assert value in sample.reply, (value, sample.reply)


def test_texts_are_clean_and_the_shopper_speaks_last(corpus: list[Sample]) -> None:
    for sample in corpus:
        texts = [*sample.passages, sample.reply, *(text for _, text in sample.history)]
        assert all(not re.search(r"[\x00-\x09\x0b-\x1f\x7f{}]", text) and text == text.strip() for text in texts)
        assert sample.history[-1][0] == "user" and {role for role, _ in sample.history} <= {"user", "bot"}


def test_grounded_samples_are_nearly_all_unique(templates: Templates) -> None:
    grounded = build_corpus(templates, 2000, seed=11, mix={"grounded": 1.0})
    assert len({identity(s) for s in grounded}) >= 0.95 * len(grounded)


def test_split_keeps_identical_dialogues_on_one_side(corpus: list[Sample]) -> None:
    train, validation = split(corpus, 0.1, seed=5)
    assert len(train) + len(validation) == len(corpus)
    assert abs(len(validation) - 400) < 40
    assert {identity(s) for s in train}.isdisjoint(identity(s) for s in validation)
    assert split(corpus, 0.1, seed=5) == (train, validation)


INVENTED_PRICE = """
grounded:
  - name: invented_price
    passages: ["{product} - material: {material}."]
    questions: ["What does the {product} cost?"]
    replies: ["The price of the {product} is {price}.", "It is {price}."]
"""
UNKNOWN_POOL = """
grounded:
  - name: shoe_width
    passages: ["{product} - width: {shoe_width}."]
    questions: ["How wide is the {product}?"]
    replies: ["Width of the {product}: {shoe_width}."]
"""
CHITCHAT_WITH_A_VALUE = """
chitchat:
  - name: size_smalltalk
    questions: ["hello"]
    replies: ["Hi! Have you seen our {product}?"]
"""
DESCRIPTION_THAT_LOSES_ATTRIBUTES = """
descriptions:
  - name: all_or_nothing
    sentences:
      - ["The {name} from {category}."]
      - ["Made of {material} in {colours}, sizes {sizes}, with {features}, for {price}."]
"""


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (INVENTED_PRICE, r"broken\.yml: grounded family 'invented_price': reply slot \{price\} is in neither"),
        (UNKNOWN_POOL, r"broken\.yml: grounded family 'shoe_width': slot \{shoe_width\} names no pool"),
        (CHITCHAT_WITH_A_VALUE, r"broken\.yml: chitchat family 'size_smalltalk': reply .* must state no values"),
        (DESCRIPTION_THAT_LOSES_ATTRIBUTES, r"broken\.yml: description 'all_or_nothing': .* may go unmentioned"),
    ],
)
def test_a_broken_template_names_its_file_and_family(tmp_path: Path, broken: str, message: str) -> None:
    for path in TEMPLATES.glob("*.yml"):
        shutil.copy(path, tmp_path)
    load_templates(tmp_path)  # the copy alone is fine
    (tmp_path / "broken.yml").write_text(broken, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_templates(tmp_path)
    assert issubclass(TemplateError, ValueError)
