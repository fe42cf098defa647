"""Messages in another language than the shop's are recognised by their function words."""

from __future__ import annotations

import pytest

from nlu.classifier import IntentClassifier
from nlu.dataset import load_examples
from nlu.language import foreign_language
from nlu.train import TrainResult
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Où est ma commande, s'il vous plaît ?", "French"),
        ("Wie lange dauert die Lieferung nach Österreich?", "German"),
        ("¿Dónde está mi pedido? Lo compré hace una semana", "Spanish"),
        ("Perché il mio ordine non è ancora arrivato?", "Italian"),
        ("Onde está a minha encomenda, por favor?", "Portuguese"),
        ("Waar is mijn pakket, ik wacht al een week", "Dutch"),
    ],
)
def test_function_words_name_the_language(text: str, language: str) -> None:
    assert foreign_language(text) == language


@pytest.mark.parametrize(
    "text",
    [
        "no no no",  # "no" is Spanish and Italian too
        "price per item for the Killer Heels?",
        "come on, where is my order 10023",
        "is the dove grey one in stock",
        "ta, bye",
        "im waiting for my refund",
        "wat is the status of order 10031",
        "tschüss",  # one word: too little to tell
        "paiement options",  # shop words with a typo, no function word
        "Le Chic Blazer in size M please",  # one French article in a product name
        "",
    ],
)
def test_english_messages_stay_english(text: str) -> None:
    assert foreign_language(text) is None


def test_no_support_message_of_the_training_or_robustness_data_reads_as_foreign() -> None:
    for path in ("data/nlu.yml", "data/tests/robustness.yml"):
        support = [e.text for e in load_examples(ROOT / path) if e.intent != "out_of_scope"]
        assert [t for t in support if foreign_language(t)] == [], path


def test_the_classifier_flags_a_foreign_message_out_of_scope(trained: TrainResult) -> None:
    classifier = IntentClassifier.load(trained.output_dir)

    foreign, english = classifier.parse_batch(["Wo ist mein Paket, ich warte schon eine Woche", "where is my parcel"])

    assert foreign.out_of_scope and foreign.metadata["language"] == "German"
    assert "language" not in english.metadata
