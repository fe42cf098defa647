"""Loading Rasa NLU YAML and CSV training data, hashing it, and splitting it per intent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nlu.dataset import (
    DatasetError,
    Example,
    data_hash,
    load_examples,
    stratified_split,
    strip_annotations,
)
from nlu.parse import Entity

RASA_YAML = """\
version: "3.1"
nlu:
- intent: track_order
  examples: |
    - where is my order [10023](order_id)?
    - is the [Aurora Merino Sweater](product) shipped yet
    - track [10031]{"entity": "order_id"} and [10032](order_id) please
- intent: greet
  examples: |
    - hello
    - hi there
- synonym: sweater
  examples: |
    - jumper
"""


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_yaml_examples_are_read_with_entities_and_offsets(tmp_path: Path) -> None:
    examples = load_examples(write(tmp_path, "nlu.yml", RASA_YAML))

    assert [e.intent for e in examples] == ["track_order"] * 3 + ["greet"] * 2
    assert examples[0] == Example("where is my order 10023?", "track_order", (Entity("order_id", "10023", 18, 23),))
    assert examples[1].entities == (Entity("product", "Aurora Merino Sweater", 7, 28),)
    assert examples[2].text == "track 10031 and 10032 please"
    for example in examples:
        for entity in example.entities:
            assert example.text[entity.start : entity.end] == entity.value


def test_json_annotation_value_and_rasa2_synonym_are_the_entity_value() -> None:
    text, entities = strip_annotations('ship to [NYC]{"entity": "city", "value": "New York"} in [navy](colour:blue)')

    assert text == "ship to NYC in navy"
    assert entities == (Entity("city", "New York", 8, 11), Entity("colour", "blue", 15, 19))


def test_long_form_examples_and_plain_brackets(tmp_path: Path) -> None:
    content = "nlu:\n- intent: faq\n  examples:\n  - text: what is [this]\n  - text: returns?\n"

    examples = load_examples(write(tmp_path, "faq.yaml", content))

    assert [(e.text, e.entities) for e in examples] == [("what is [this]", ()), ("returns?", ())]


def test_csv_with_category_column_like_banking77(tmp_path: Path) -> None:
    content = '\ufefftext,category\n"card lost, help",lost_card\nwhat is my balance,balance\n'

    examples = load_examples(write(tmp_path, "banking.csv", content))

    assert examples == [
        Example("card lost, help", "lost_card"),
        Example("what is my balance", "balance"),
    ]


def test_a_folder_loads_every_nlu_file_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b.csv", "text,intent\nbye,goodbye\n")
    write(tmp_path, "a.yml", RASA_YAML)
    write(tmp_path, "notes.txt", "not data")
    write(tmp_path, "responses.yml", "responses:\n  utter_greet:\n  - text: hi\n")

    examples = load_examples(tmp_path)

    assert len(examples) == 6
    assert examples[-1] == Example("bye", "goodbye")
    write(tmp_path, "broken.yml", "nlu: [unclosed")
    with pytest.raises(DatasetError, match="broken.yml"):
        load_examples(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.yml", "nlu: [unclosed", "line 1"),
        ("bad.yml", "version: '3.1'\n", "`nlu:` list"),
        ("bad.yml", "nlu:\n- intent: greet\n", "'greet' has no `examples:`"),
        ("bad.yml", "nlu:\n- intent: greet\n  examples: |\n    hello\n", "'greet'"),
        ("bad.yml", "nlu:\n- intent: ''\n  examples: |\n    - hi\n", "non-empty string"),
        ("bad.yml", "nlu:\n- intent: x\n  examples: |\n    - [a](b\n", "malformed entity"),
        ("bad.yml", "nlu:\n- intent: x\n  examples: |\n    - [a]{oops}\n", "invalid entity JSON"),
        ("bad.yml", 'nlu:\n- intent: x\n  examples: |\n    - [a]{"role": "r"}\n', "`entity`"),
        ("bad.yml", "nlu:\n- story: x\n", "unexpected"),
        ("bad.yml", "nlu: []\nnlu: []\n", "duplicate key 'nlu'"),
        ("bad.csv", "sentence,label\nhi,greet\n", "line 1"),
        ("bad.csv", "text,intent\nhi,greet\n,greet\n", "line 3"),
        ("missing.yml", None, "no such file"),
    ],
)
def test_malformed_input_names_file_and_place(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = write(tmp_path, name, content) if content is not None else tmp_path / name

    with pytest.raises(DatasetError, match=name) as caught:
        load_examples(path)

    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_data_hash_ignores_order_and_entities_but_not_labels() -> None:
    a, b = Example("hi", "greet"), Example("bye", "goodbye")

    assert data_hash([a, b]) == data_hash([b, a])
    assert data_hash([a]) == data_hash([Example("hi", "greet", (Entity("x", "hi", 0, 2),))])
    assert data_hash([a]) != data_hash([Example("hi", "goodbye")])
    assert len(data_hash([])) == 64


def make_examples(counts: dict[str, int]) -> list[Example]:
    return [Example(f"{intent} {i}", intent) for intent, n in counts.items() for i in range(n)]


def test_split_keeps_every_intent_with_two_examples_in_both_halves() -> None:
    examples = make_examples({"big": 40, "small": 2, "pair": 3, "single": 1})

    train, validation = stratified_split(examples, 0.15, seed=13)

    assert sorted(train + validation, key=str) == sorted(examples, key=str)
    assert Counter(e.intent for e in validation) == {"big": 6, "small": 1, "pair": 1}
    assert {e.intent for e in train} == {"big", "small", "pair", "single"}


def test_split_is_reproducible_and_independent_of_input_order() -> None:
    examples = make_examples({"a": 20, "b": 20})

    first = stratified_split(examples, 0.25, seed=1)
    again = stratified_split(list(reversed(examples)), 0.25, seed=1)
    other = stratified_split(examples, 0.25, seed=2)

    assert set(first[1]) == set(again[1])
    assert set(first[1]) != set(other[1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_fractions_outside_zero_and_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(make_examples({"a": 4}), fraction, seed=0)
